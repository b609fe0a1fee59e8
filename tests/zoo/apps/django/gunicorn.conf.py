"""gunicorn for every zoo service: one gthread worker (threads, so a slow request
does not hold the others), bound to APP_PORT; a short graceful timeout so SIGTERM
ends the process within the driver's grace period."""
import os

bind = f"127.0.0.1:{os.environ['APP_PORT']}"
workers = 1
worker_class = "gthread"
threads = 8
graceful_timeout = 2
timeout = 30
accesslog = None
loglevel = "warning"


def worker_exit(server, worker):
    # Flush the spans of the provider opentelemetry-instrument set up before the
    # worker goes (the SDK's atexit hook would too, if the worker reaches it).
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()
