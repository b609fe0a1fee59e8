"""Settings every zoo service shares; each service's settings module adds its URLconf."""
import os

SECRET_KEY = "zoo-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = []
# opentelemetry-instrumentation-django inserts its middleware at position 0 (outermost).
MIDDLEWARE = [
    "zooapp.errors.ErrorMiddleware",
    "zooapp.context.RequestContextMiddleware",
]
DATABASES = {}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"zoo": {"handlers": ["console"], "level": "INFO"},
                "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False}},
}
SERVICE = os.environ.get("OTEL_SERVICE_NAME", "zoo")
