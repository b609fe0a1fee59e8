"""Request context: the `x-trace-id` response header from the active (SERVER) span,
the tenant from `x-tenant` or the W3C baggage entry `app.tenant`, set as `app.tenant`
on the active span and put into the baggage for downstream calls."""
from opentelemetry import baggage, context, trace


def current_tenant(request):
    return getattr(request, "tenant", None) or "anonymous"


class RequestContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        span = trace.get_current_span()
        tenant = request.headers.get("x-tenant") or baggage.get_baggage("app.tenant") or "anonymous"
        request.tenant = tenant
        span.set_attribute("app.tenant", tenant)
        token = context.attach(baggage.set_baggage("app.tenant", tenant))
        try:
            response = self.get_response(request)
        finally:
            context.detach(token)
        ctx = span.get_span_context()
        if ctx.is_valid:
            response["x-trace-id"] = format(ctx.trace_id, "032x")
        return response
