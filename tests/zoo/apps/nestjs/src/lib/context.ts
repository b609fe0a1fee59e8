// Request context shared by the three services.
//
// - `traceRequests(server)`: a 'request' listener on the HTTP server, called
//   inside the SERVER span the http instrumentation starts: it answers every
//   request with `x-trace-id` and puts `app.tenant` on that span.
// - `requestContext`: Express-level middleware (app.use): resolves the tenant
//   (header `x-tenant` at the edge, W3C baggage `app.tenant` further down) onto
//   `req.tenant` and carries it on as baggage for the calls this request makes.
import type { Server, IncomingMessage, ServerResponse } from 'http';
import { context, propagation, trace } from '@opentelemetry/api';

function tenantOf(req: IncomingMessage): string | undefined {
  const header = req.headers['x-tenant'];
  const fromHeader = Array.isArray(header) ? header[0] : header;
  const fromBaggage = propagation.getBaggage(context.active())?.getEntry('app.tenant')?.value;
  return fromHeader || fromBaggage;
}

export function traceRequests(server: Server): void {
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    const span = trace.getActiveSpan();
    if (!span) return;
    res.setHeader('x-trace-id', span.spanContext().traceId);
    const tenant = tenantOf(req);
    if (tenant) span.setAttribute('app.tenant', tenant);
  });
}

export function requestContext(req: any, _res: any, next: (err?: unknown) => void) {
  const tenant = tenantOf(req);
  req.tenant = tenant || 'anonymous';
  const bag = propagation.getBaggage(context.active());
  if (tenant && bag?.getEntry('app.tenant')?.value !== tenant) {
    const withTenant = (bag || propagation.createBaggage()).setEntry('app.tenant', { value: tenant });
    return context.with(propagation.setBaggage(context.active(), withTenant), () => next());
  }
  return next();
}
