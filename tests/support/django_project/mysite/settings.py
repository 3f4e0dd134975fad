"""Settings of a small Django project using pgqueue, on the database named by
``SHOP_DATABASE_DSN`` (a libpq DSN)."""

import os

from psycopg.conninfo import conninfo_to_dict

_db = conninfo_to_dict(os.environ["SHOP_DATABASE_DSN"])

SECRET_KEY = "sample-project-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["pgqueue.contrib.django", "shop"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.get("dbname", "postgres"),
        "USER": _db.get("user", ""),
        "PASSWORD": _db.get("password", ""),
        "HOST": _db.get("host", ""),
        "PORT": _db.get("port", ""),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

PGQUEUE = {"TASK_PATHS": ["shop.jobs"], "QUEUE": "shop"}
