'use strict';
// A Fastify instance with the shared hook and error handler; listen on
// APP_PORT; stop cleanly on SIGTERM (the auto-instrumentation's register hook
// flushes the SDK on SIGTERM but, by installing a listener, also suppresses the
// default exit: close the server and the service's handles so the loop drains).
const Fastify = require('fastify');
const { requestContext } = require('./context');
const { errorHandler } = require('./errors');

function createApp() {
  const app = Fastify({ logger: { level: 'warn' } });
  app.addHook('onRequest', requestContext);
  app.setErrorHandler(errorHandler);
  return app;
}

async function start(app, service, onClose = async () => {}) {
  const port = Number(process.env.APP_PORT || 3000);
  await app.listen({ port, host: '127.0.0.1' });
  console.log(`[${service}] listening on 127.0.0.1:${port}`);
  process.on('SIGTERM', () => {
    app.close().then(onClose).catch(() => {});
  });
}

module.exports = { createApp, start };
