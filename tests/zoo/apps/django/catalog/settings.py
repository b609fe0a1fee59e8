import os

from zooapp.settings_common import *  # noqa: F401,F403

ROOT_URLCONF = "catalog.urls"
INSTALLED_APPS = ["catalog"]
_pg = {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": "zoo",
    "USER": "postgres",
    "HOST": os.environ["APP_PG_HOST"],
    "PORT": os.environ["APP_PG_PORT"],
    "CONN_MAX_AGE": 0,
}
DATABASES = {
    # Every statement of the main database is cancelled after 1.5 s.
    "default": dict(_pg, OPTIONS={"options": "-c statement_timeout=1500"}),
    # The exports database: a psycopg pool of ONE connection; a request waits 300 ms for it.
    "exports": dict(_pg, OPTIONS={"pool": {"min_size": 1, "max_size": 1, "timeout": 0.3}}),
}
