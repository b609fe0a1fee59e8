'use strict';
// onRequest hook shared by the services: the trace id for the caller (header
// `x-trace-id`), and the tenant (header `x-tenant`, forwarded by every service
// to the next) on the request and as `app.tenant` on the active span.
const { trace } = require('@opentelemetry/api');

function requestContext(request, reply, done) {
  const span = trace.getActiveSpan();
  if (span) reply.header('x-trace-id', span.spanContext().traceId);
  request.tenant = request.headers['x-tenant'] || 'anonymous';
  if (span && request.headers['x-tenant']) span.setAttribute('app.tenant', request.tenant);
  done();
}

module.exports = { requestContext };
