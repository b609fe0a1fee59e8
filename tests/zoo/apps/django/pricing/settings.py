from zooapp.settings_common import *  # noqa: F401,F403

ROOT_URLCONF = "pricing.urls"
