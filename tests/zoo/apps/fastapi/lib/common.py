"""Code shared by the FastAPI services: request context (x-trace-id, tenant),
in-house feature flags, the app's error types and exception handlers, and the
httpx JSON client every service uses to call the next one.

OpenTelemetry is only *read* here (the active span, to answer its trace id, tag
the tenant and report flag evaluations); the spans themselves all come from
`opentelemetry-instrument` (fastapi/asgi, httpx, asyncpg, redis instrumentations).
"""

import contextvars
import json
import logging
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry import trace
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("zoo")
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

TENANT = contextvars.ContextVar("tenant", default="anonymous")


def trace_id_headers():
    ctx = trace.get_current_span().get_span_context()
    return {"x-trace-id": format(ctx.trace_id, "032x")} if ctx.is_valid else {}


def json_response(body, status):
    """A JSON answer carrying x-trace-id: responses made by exception handlers do
    not pass through the http middleware below, so they set it themselves."""
    return JSONResponse(body, status_code=status, headers=trace_id_headers())


# ----------------------------------------------------------------- context
def install_context(app: FastAPI):
    """http middleware: the tenant (header `x-tenant`) as `app.tenant` on the active
    span, which is the fastapi instrumentation's SERVER span; `x-trace-id`."""

    @app.middleware("http")
    async def request_context(request: Request, call_next):
        tenant = request.headers.get("x-tenant") or "anonymous"
        TENANT.set(tenant)
        if tenant != "anonymous":
            trace.get_current_span().set_attribute("app.tenant", tenant)
        response = await call_next(request)
        response.headers.update(trace_id_headers())
        return response


# ------------------------------------------------------------------- flags
# flag -> (variants by tenant, fallback)
FLAGS = {
    "catalog.shipping-v2": ({"umbrella": "v2", "hooli": "v2"}, "v1"),
    "catalog.dimensions-cache": ({"acme": "redis", "hooli": "redis"}, "off"),
    "pricing.signed-quotes": ({}, "on"),
    "edge.stock-retries": ({}, "3"),
}


def evaluate_flag(key):
    """Like an OpenFeature tracing hook: a `feature_flag.evaluation` event on the active span."""
    variants, fallback = FLAGS.get(key, ({}, "off"))
    variant = variants.get(TENANT.get(), fallback)
    trace.get_current_span().add_event("feature_flag.evaluation", {
        "feature_flag.key": key,
        "feature_flag.result.variant": variant,
        "feature_flag.provider.name": "zoo-flags",
    })
    return variant


# ------------------------------------------------------------------ errors
class AppError(Exception):
    """An error the service means to answer with its own status."""
    status = 500
    code = "internal"

    def __init__(self, message, details=None):
        super().__init__(message)
        self.details = details

    def body(self):
        return {"error": self.code, "message": str(self), "details": self.details}


class NotFound(AppError):
    status = 404
    code = "not_found"


class ValidationError(AppError):
    status = 422
    code = "invalid"


class ServiceUnavailable(AppError):
    status = 503
    code = "store_unavailable"


class UpstreamError(Exception):
    """A call to another service failed: `<service> responded 500 Internal Server
    Error` or `<service> request failed: <ExceptionType>: <cause>` (with `__cause__`)."""

    def __init__(self, service, message, status=None):
        super().__init__(message)
        self.service = service
        self.status = status


def install_exception_handlers(app: FastAPI):
    """`@app.exception_handler(AppError)` renders the app's own errors with their
    status (Starlette's ExceptionMiddleware); `@app.exception_handler(Exception)`
    is the 500 responder for everything else (Starlette's ServerErrorMiddleware,
    which re-raises after answering)."""

    @app.exception_handler(AppError)
    async def app_error(request: Request, e: AppError):
        log.warning("app error %s: %s", type(e).__name__, e)
        # json.dumps, not JSONResponse: the body must be plain JSON types.
        return Response(json.dumps(e.body()), status_code=e.status, media_type="application/json",
                        headers=trace_id_headers())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        return json_response({"error": "http", "message": e.detail}, e.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception):
        log.error("unhandled %s on %s %s: %s", type(e).__name__, request.method, request.url.path, e)
        return json_response({"error": "internal", "type": type(e).__name__, "message": str(e)}, 500)


# ---------------------------------------------------------------- upstream
_client = None


def client():
    global _client
    if _client is None:
        # No keep-alive: uvicorn closes the connection after a response when the app
        # raised (ServerErrorMiddleware re-raises after answering the 500), and a
        # pooled connection reused before that close arrives fails with ReadError.
        _client = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0))
    return _client


async def request_json(service, method, url, timeout=2.0, **kwargs):
    """httpx + the app's wrapper: transport failures and HTTP errors become
    UpstreamError; the body of a 2xx answer is parsed as JSON."""
    headers = kwargs.pop("headers", {})
    tenant = TENANT.get()
    if tenant != "anonymous":
        headers["x-tenant"] = tenant
    try:
        resp = await client().request(method, url, timeout=timeout, headers=headers, **kwargs)
    except httpx.HTTPError as e:
        raise UpstreamError(service, f"{service} request failed: {type(e).__name__}: {e}") from e
    if resp.status_code >= 400:
        raise UpstreamError(service, f"{service} responded {resp.status_code} {resp.reason_phrase}", resp.status_code)
    return resp.json()


async def with_retry(fn, attempts, retry_if):
    import asyncio
    for i in range(attempts):
        try:
            return await fn()
        except Exception as e:  # noqa: BLE001 - re-raised below
            if i == attempts - 1 or not retry_if(e):
                raise
            await asyncio.sleep(0.05 * (i + 1))
