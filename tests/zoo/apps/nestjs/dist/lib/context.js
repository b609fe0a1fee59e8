"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.traceRequests = traceRequests;
exports.requestContext = requestContext;
const api_1 = require("@opentelemetry/api");
function tenantOf(req) {
    const header = req.headers['x-tenant'];
    const fromHeader = Array.isArray(header) ? header[0] : header;
    const fromBaggage = api_1.propagation.getBaggage(api_1.context.active())?.getEntry('app.tenant')?.value;
    return fromHeader || fromBaggage;
}
function traceRequests(server) {
    server.prependListener('request', (req, res) => {
        const span = api_1.trace.getActiveSpan();
        if (!span)
            return;
        res.setHeader('x-trace-id', span.spanContext().traceId);
        const tenant = tenantOf(req);
        if (tenant)
            span.setAttribute('app.tenant', tenant);
    });
}
function requestContext(req, _res, next) {
    const tenant = tenantOf(req);
    req.tenant = tenant || 'anonymous';
    const bag = api_1.propagation.getBaggage(api_1.context.active());
    if (tenant && bag?.getEntry('app.tenant')?.value !== tenant) {
        const withTenant = (bag || api_1.propagation.createBaggage()).setEntry('app.tenant', { value: tenant });
        return api_1.context.with(api_1.propagation.setBaggage(api_1.context.active(), withTenant), () => next());
    }
    return next();
}
