"""gunicorn for every flask zoo service: one gthread worker (threads, so a slow
request does not hold the others), bound to APP_PORT; a short graceful timeout so
SIGTERM ends the process within the driver's grace period."""
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
    # The SDK's BatchSpanProcessor flushes at interpreter exit; a gunicorn worker
    # leaves through os._exit, so flush the provider opentelemetry-instrument set up.
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()
