"""Django itself: secrets and hosts, apps and middleware, the database, logins, static and
media files, email, and the HTTPS and cookie policy."""

from datetime import timedelta

import environ
from django.core.exceptions import ImproperlyConfigured

from config.secret_checks import (
    DEV_VALUES,
    LOCAL_SECRET_KEY,
    refuse_dev_values,
    refuse_weak_secret_key,
)
from config.settings.environment import BASE_DIR, DJANGO_ENV, LOCAL, env, url_setting

# Django's debug pages show settings and code: local use only.
DEBUG = env.bool("DEBUG", default=False)
if LOCAL:
    SECRET_KEY = env.str("SECRET_KEY", default=LOCAL_SECRET_KEY)
else:
    SECRET_KEY = env.str("SECRET_KEY")
    # A dev checkout's .env (or one copied from it) must not reach production unnoticed.
    if DEBUG:
        raise ImproperlyConfigured("DEBUG is true: it is never allowed with DJANGO_ENV=production")
    refuse_dev_values({name: env.str(name, default="") for name in DEV_VALUES})
    refuse_weak_secret_key(SECRET_KEY)
# The host names this site answers to (Host header checks); CSRF_TRUSTED_ORIGINS adds the
# origins a form may be posted from behind a proxy that changes the scheme or port.
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"] if LOCAL else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "django_tasks",  # the backport of django.tasks (Django 6 has it built in)
    "axes",
    "workers",
    "apps.notifications",
    "apps.billing",
    "apps.analytics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "workers.ops.request_id.RequestIdMiddleware",
    "workers.ops.request_guards.RejectNulCharacters",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into its 429 page
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The zero-setup default is SQLite, written at once by web, both worker pools and beat:
# WAL and IMMEDIATE transactions make writers queue for up to 20 s instead of failing.
DATABASE_URL = url_setting("DATABASE_URL", default=(
    f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
    "?timeout=20&transaction_mode=IMMEDIATE&init_command=PRAGMA%20journal_mode%3DWAL"))
DATABASES = {"default": environ.Env.db_url_config(DATABASE_URL)}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Logins are throttled by django-axes: its backend refuses a locked-out login before the
# password is checked. Failures are rows in the database, so every gunicorn worker and pod
# counts the same ones. A username is locked from the address that failed LOGIN_FAILURE_LIMIT
# times for LOGIN_LOCKOUT_MINUTES (each further try restarts the wait), and a success
# forgets the failures. Locking by username and address together, not by either alone,
# keeps an attacker from locking every operator out; behind a proxy every client has the
# proxy's address and the lock becomes one per username (docs/scaling.md).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # no banner in every process; lockouts are still logged
# The login form's field, stated: axes' default is a lazy object posing as a string, which
# the worker's configuration report (workers/runtime/config_censor.py) fails on.
AXES_USERNAME_FORM_FIELD = "username"
# A staff session (it can replay and read failed jobs) lasts this many seconds from login,
# not Django's two weeks (SESSION_COOKIE_AGE, kept for other users): workers/ops/staff_sessions.py.
STAFF_SESSION_AGE = env.int("STAFF_SESSION_AGE", default=8 * 3600)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_ROOT = env.str("MEDIA_ROOT", default="") or BASE_DIR / "media"  # exports, shared with workers
MEDIA_URL = "media/"  # never served publicly: exports are downloaded through their view
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not LOCAL
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# One URL for the email backend and its server (smtp://user:password@host:587/?tls=True).
_email = env.email_url("EMAIL_URL", default="memorymail://" if DJANGO_ENV == "test"
                       else "consolemail://")
# The console and in-memory backends, as the notifications app extends them: they take a
# campaign's batch of recipients in one call, as a provider's batch API does.
EMAIL_BACKEND = {
    "django.core.mail.backends.console.EmailBackend":
        "apps.notifications.mail_backends.ConsoleBatchBackend",
    "django.core.mail.backends.locmem.EmailBackend":
        "apps.notifications.mail_backends.InMemoryBatchBackend",
}.get(_email["EMAIL_BACKEND"], _email["EMAIL_BACKEND"])
EMAIL_HOST = _email.get("EMAIL_HOST", "localhost")
EMAIL_PORT = _email.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
EMAIL_FILE_PATH = _email.get("EMAIL_FILE_PATH", "")  # filemail://
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="no-reply@example.com")

# Security: on outside dev/test, so production passes `manage.py check --deploy` untouched.
# X-Forwarded-Proto is believed only when a proxy in front sets it and drops the client's
# (TRUSTED_PROXY_SSL_HEADER=true): otherwise any client could claim HTTPS.
if env.bool("TRUSTED_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not LOCAL)
# Probed and scraped over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if LOCAL else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not LOCAL)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not LOCAL)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not LOCAL)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not LOCAL)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
