"""Errors and the one error-handling middleware every service mounts (the Django way:
`process_exception` turns any exception into a JSON response). For a 5xx it records
the exception on the active span (the request's SERVER span) and sets its status to
ERROR, logs one structured line, and answers `{"error": ..., "message": ...}`.
`server_error` is the `handler500` view: Django calls it when an exception escapes
the middleware itself."""
import json
import logging
import sys

from django.http import JsonResponse
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

log = logging.getLogger("zoo")


class HttpError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message, details=None):
        super().__init__(message)
        self.details = details


class ValidationError(HttpError):
    status = 422
    code = "invalid_request"


class ServiceUnavailableError(HttpError):
    status = 503
    code = "store_unavailable"


def record(exc):
    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class ErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exc):
        status = getattr(exc, "status", 500)
        if status >= 500:
            record(exc)
        body = {"error": getattr(exc, "code", "internal_error"), "message": str(exc)}
        details = getattr(exc, "details", None)
        if details is not None:
            body["details"] = details
        # One structured log line; json.dumps of the details is where a bad payload bites.
        log.warning(json.dumps({"event": "request_failed", "path": request.path, "status": status,
                                "tenant": getattr(request, "tenant", None), **body}))
        return JsonResponse(body, status=status)


def server_error(request):
    exc = sys.exc_info()[1]
    if exc is not None:
        record(exc)
    return JsonResponse({"error": "internal_error", "message": "unhandled error"}, status=500)
