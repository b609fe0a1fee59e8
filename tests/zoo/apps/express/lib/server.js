'use strict';
// Listen on APP_PORT, and stop cleanly on SIGTERM. The auto-instrumentation's
// register hook flushes the SDK on SIGTERM but, by installing a listener, also
// suppresses the default exit: close the server so the event loop drains once
// the exporter is done; `onClose` ends the service's own handles (pools, redis).
function listen(app, service, onClose = () => {}) {
  const port = Number(process.env.APP_PORT || 3000);
  const server = app.listen(port, '127.0.0.1', () => {
    console.log(`[${service}] listening on 127.0.0.1:${port}`);
  });
  process.on('SIGTERM', () => {
    server.close();
    server.closeAllConnections();
    Promise.resolve(onClose()).catch(() => {});
  });
  return server;
}

module.exports = { listen };
