"""Code shared by the Flask services: request context (x-trace-id, tenant),
in-house feature flags, the app's error types, the JSON client every service
uses to call the next one, and how a service is served.

OpenTelemetry is only *read* here (the active span, to answer its trace id, tag
the tenant and report flag evaluations); the spans themselves all come from
`opentelemetry-instrument` (flask, requests, psycopg2, redis instrumentations).
"""

import json
import logging
import os
import signal
import sys
import time

import requests
from flask import g, jsonify, request
from opentelemetry import trace

log = logging.getLogger("zoo")
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


# ----------------------------------------------------------------- context
def install_context(app):
    """before_request: the tenant (header `x-tenant`) as `app.tenant` on the active
    span, which at this point is the flask instrumentation's SERVER span;
    after_request: the `x-trace-id` header."""

    @app.before_request
    def request_context():
        g.tenant = request.headers.get("x-tenant") or "anonymous"
        span = trace.get_current_span()
        if g.tenant != "anonymous":
            span.set_attribute("app.tenant", g.tenant)

    @app.after_request
    def trace_id_header(response):
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            response.headers["x-trace-id"] = format(ctx.trace_id, "032x")
        return response


# ------------------------------------------------------------------- flags
# flag -> (variants by tenant, fallback)
FLAGS = {
    "catalog.shipping-v2": ({"umbrella": "v2", "hooli": "v2"}, "v1"),
    "catalog.dimensions-cache": ({"acme": "redis", "hooli": "redis"}, "off"),
    "pricing.signed-quotes": ({}, "on"),
    "edge.stock-retries": ({}, "3"),
    "edge.loyalty-discounts": ({"hooli": "tiered"}, "flat"),
}


def evaluate_flag(key, tenant=None):
    """Like an OpenFeature tracing hook: a `feature_flag.evaluation` event on the active span."""
    tenant = tenant or getattr(g, "tenant", None)
    variants, fallback = FLAGS.get(key, ({}, "off"))
    variant = variants.get(tenant, fallback)
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
    Error` or `<service> request failed: <cause>` (with `__cause__`)."""

    def __init__(self, service, message, status=None):
        super().__init__(message)
        self.service = service
        self.status = status


def install_error_responders(app):
    """The Flask documentation's layout: HTTP errors and the app's own AppErrors
    are rendered by their handlers; anything else is left unhandled, so Flask's
    handle_exception logs it and renders InternalServerError through the 500
    handler (`e.original_exception` is the error)."""
    from werkzeug.exceptions import HTTPException, InternalServerError

    @app.errorhandler(AppError)
    def app_error(e):
        log.warning("app error %s: %s", type(e).__name__, e)
        return app.response_class(json.dumps(e.body()), status=e.status, mimetype="application/json")

    @app.errorhandler(InternalServerError)
    def internal_error(e):
        original = getattr(e, "original_exception", None)
        return jsonify(error="internal", message=str(original or e.description)), 500

    @app.errorhandler(HTTPException)
    def http_error(e):
        return jsonify(error=e.name, message=e.description), e.code


# ---------------------------------------------------------------- upstream
def request_json(service, method, url, timeout=2.0, **kwargs):
    """requests + the app's wrapper: transport failures and HTTP errors become
    UpstreamError; the body of a 2xx answer is parsed as JSON."""
    headers = kwargs.pop("headers", {})
    tenant = getattr(g, "tenant", None)
    if tenant and tenant != "anonymous":
        headers["x-tenant"] = tenant
    try:
        resp = requests.request(method, url, timeout=timeout, headers=headers, **kwargs)
    except requests.RequestException as e:
        raise UpstreamError(service, f"{service} request failed: {e}") from e
    if resp.status_code >= 400:
        raise UpstreamError(service, f"{service} responded {resp.status_code} {resp.reason}", resp.status_code)
    return resp.json()


def with_retry(fn, attempts, retry_if, backoff=0.05):
    for i in range(attempts):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - re-raised below
            if i == attempts - 1 or not retry_if(e):
                raise
            time.sleep(backoff * (i + 1))


# ------------------------------------------------------------------- serve
def serve(app):
    """Werkzeug's threaded server; SIGTERM exits through SystemExit so the SDK's
    atexit shutdown flushes the batch span processor."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app.run(host="127.0.0.1", port=int(os.environ["APP_PORT"]), threaded=True, debug=False, use_reloader=False)
