"""The app factory every service uses: tenant from `x-tenant` on the active span,
`x-trace-id` on every answer, feature-flag evaluation events, and the one error
responder, `@app.errorhandler(Exception)`, which answers JSON: an AppError with its
own status and details, an HTTPException with its code, anything else 500."""
import logging

from flask import Flask, g, jsonify, request
from opentelemetry import trace
from werkzeug.exceptions import HTTPException

log = logging.getLogger("zooapp")


class AppError(Exception):
    """An error the app means to answer with `status` (and optional `details`)."""

    status = 500

    def __init__(self, message, status=None, details=None):
        super().__init__(message)
        if status is not None:
            self.status = status
        self.details = details


class ValidationError(AppError):
    status = 422


def flag(key, variant):
    """Record a feature-flag evaluation on the active span (OTel feature-flag semconv)."""
    trace.get_current_span().add_event("feature_flag.evaluation", {
        "feature_flag.key": key,
        "feature_flag.result.variant": variant,
        "feature_flag.variant": variant,
    })
    return variant


def tenant():
    return getattr(g, "tenant", None)


def create_app(name):
    app = Flask(name)

    @app.before_request
    def _tenant():
        g.tenant = request.headers.get("x-tenant")
        if g.tenant:
            trace.get_current_span().set_attribute("app.tenant", g.tenant)

    @app.after_request
    def _trace_id(resp):
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            resp.headers["x-trace-id"] = format(ctx.trace_id, "032x")
        return resp

    @app.errorhandler(Exception)
    def _respond(err):
        if isinstance(err, HTTPException):
            return jsonify(error=err.name, message=err.description), err.code
        if isinstance(err, AppError):
            body = {"error": type(err).__name__, "message": str(err)}
            if err.details is not None:
                body["details"] = err.details
            log.warning("%s %s: %s", request.method, request.path, err)
            return jsonify(body), err.status
        log.exception("%s %s failed", request.method, request.path)
        return jsonify(error="internal_error", message=str(err)), 500

    return app
