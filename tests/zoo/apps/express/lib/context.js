'use strict';
// Request context shared by the services: the trace id for the caller, the
// tenant (header `x-tenant` at the edge, W3C baggage `app.tenant` further
// down) on the active span, and the tenant carried on as baggage.
const { trace, context, propagation } = require('@opentelemetry/api');

function requestContext(req, res, next) {
  const span = trace.getActiveSpan();
  if (span) res.setHeader('x-trace-id', span.spanContext().traceId);
  const fromBaggage = propagation.getBaggage(context.active())?.getEntry('app.tenant')?.value;
  const tenant = req.get('x-tenant') || fromBaggage;
  req.tenant = tenant || 'anonymous';
  if (span && tenant) span.setAttribute('app.tenant', tenant);
  if (tenant && !fromBaggage) {
    const bag = (propagation.getBaggage(context.active()) || propagation.createBaggage())
      .setEntry('app.tenant', { value: tenant });
    return context.with(propagation.setBaggage(context.active(), bag), next);
  }
  return next();
}

module.exports = { requestContext };
