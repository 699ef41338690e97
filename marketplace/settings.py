"""Settings from the environment, with embedded defaults for one machine (`make run`).

DATABASE_URL   default sqlite:///var/db.sqlite3 (WAL); postgres://… in production and tests
DATABASE_PREPARED_STATEMENTS  Postgres: 1 (default) prepares repeated statements; 0 behind a pooler without them
REDIS_URL      internal Celery broker; default redis://127.0.0.1:6379/0 (started by `make run`)
AGENT_BROKER_URL  broker that agents consume; default: REDIS_URL with database 1
STORAGE_URL    file:///abs/path (default: $VAR_DIR/media) or s3://bucket/prefix (+ AWS_S3_ENDPOINT_URL)
STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET  Stripe; without them the dev payment provider is used
SECRET_KEY, DEBUG, ALLOWED_HOSTS, PUBLIC_URL
DEBUG          off unless set; `make run` and `make test` set it. With DEBUG off the app refuses to start without a
               strong SECRET_KEY (see marketplace/keys.py). A https PUBLIC_URL turns on secure cookies, HSTS and the
               SSL redirect; TRUST_X_FORWARDED_PROTO=1 when a TLS proxy in front sets X-Forwarded-Proto.
PAYMENTS_DEV_PROVIDER  1 enables the simulated payment provider (it mints tokens): `make run` only
"""

import os
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from marketplace.keys import DEV_SECRET_KEY, secret_key_problem

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).lower() in ("1", "true", "yes", "on")


# Off unless the environment says otherwise: a deployment that forgets it is safe, dev tooling sets DEBUG=1.
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if DEBUG:
    SECRET_KEY = SECRET_KEY or DEV_SECRET_KEY
elif problem := secret_key_problem(SECRET_KEY):
    raise ImproperlyConfigured(
        f"{problem}. With DEBUG off the market refuses to start without a strong key: "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )
SECRET_KEY_FALLBACKS = [k for k in os.environ.get("SECRET_KEY_FALLBACKS", "").split(",") if k]
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")
PUBLIC_URL = os.environ.get("PUBLIC_URL", "http://127.0.0.1:8000")

# --- transport security: on whenever the public address is https ------------------------------
_HTTPS = urlparse(PUBLIC_URL).scheme == "https"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _HTTPS
SECURE_SSL_REDIRECT = _HTTPS
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600))) if _HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = _HTTPS and env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = _HTTPS and env_bool("SECURE_HSTS_PRELOAD", True)
if _HTTPS:
    CSRF_TRUSTED_ORIGINS = [PUBLIC_URL.rstrip("/")]
if env_bool("TRUST_X_FORWARDED_PROTO", False):  # only behind a proxy that overwrites the header
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "axes",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc files, served by us (no CDN)
    "marketplace.accounts",
    "marketplace.ledger",
    "marketplace.scenes",
    "marketplace.jobs",
    "marketplace.nodes",
    "marketplace.dispatch",
    "marketplace.verification",
    "marketplace.payments",
    "marketplace.disputes",
    "marketplace.api",
    "marketplace.web",
    "marketplace.ops",
    "django_prometheus",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "marketplace.logs.RequestContextMiddleware",  # request id and user bound for every line; one access line
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # django-axes: turns its lockouts into 429 pages
    "django_prometheus.middleware.PrometheusAfterMiddleware",  # last: times the whole response
]

# --- passwords and login throttling ---------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes: AxesStandaloneBackend first refuses a locked-out (username, IP) before any password is hashed.
# API and node bearer tokens go through the same handler (marketplace/accounts/throttle.py).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = float(os.environ.get("AXES_COOLOFF_HOURS", "0.25"))  # hours: 15 minutes
# Per (username, IP): one attacker cannot lock a victim out from everywhere, nor guess freely from one address.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_CALLABLE = "marketplace.api.errors.lockout"  # API paths answer problem details
# Proxies in front of the app that append to X-Forwarded-For (compose: 1, the TLS proxy); 0 trusts no header.
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))
AXES_CLIENT_IP_CALLABLE = "marketplace.accounts.throttle.client_ip"

ROOT_URLCONF = "marketplace.urls"
WSGI_APPLICATION = "marketplace.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

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

# --- database -------------------------------------------------------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the single writer; IMMEDIATE takes the write lock at BEGIN so two
    # writers queue instead of failing with "database is locked" on lock upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    _pg_options = DATABASES["default"].setdefault("OPTIONS", {})  # what DATABASE_URL's query gave (sslmode=…) stays
    if env_bool("DATABASE_PREPARED_STATEMENTS", True):
        # Server-side binding lets psycopg prepare a statement once a connection has run it 5 times: Postgres
        # parses and plans it once per connection instead of on every call. The hot path's statements are fixed
        # text, so that saves ~13 % of Postgres CPU per frame (bench_dispatch, issue 17). Behind a
        # transaction-mode pooler that cannot keep prepared statements (PgBouncer before 1.21), set
        # DATABASE_PREPARED_STATEMENTS=0.
        _pg_options.update(server_side_binding=True, prepare_threshold=5)
    if not env_bool("DATABASE_JIT", False):
        # Postgres compiles a statement the planner thinks costly with LLVM: ~190 ms for a count of the nodes
        # online at 100,000 nodes that runs in ~30 ms. The market's statements are short or scan a table once, so
        # the compile costs more than it saves: the farm's periodic work took 2-4 times its time (bench_fleet).
        _pg_options["options"] = " ".join(filter(None, [_pg_options.get("options", ""), "-c jit=off"]))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- storage --------------------------------------------------------------------------------
STORAGE_URL = os.environ.get("STORAGE_URL", f"file://{VAR_DIR / 'media'}")
_storage = urlparse(STORAGE_URL)
if _storage.scheme == "s3":
    STORAGES_DEFAULT = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": _storage.netloc,
            "location": _storage.path.strip("/"),
            "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
            "querystring_expire": 600,
            "file_overwrite": True,
        },
    }
    MEDIA_ROOT = VAR_DIR / "media"
else:
    _path = _storage.path if _storage.netloc == "" else _storage.netloc + _storage.path
    MEDIA_ROOT = Path(_path) if Path(_path).is_absolute() else BASE_DIR / _path
    STORAGES_DEFAULT = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    }
STORAGES = {
    "default": STORAGES_DEFAULT,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True  # serve app static files without collectstatic in one-machine mode

# --- celery ---------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
AGENT_BROKER_URL = os.environ.get("AGENT_BROKER_URL") or REDIS_URL.rsplit("/", 1)[0] + "/1"
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Work that runs Blender on an artist's scene (inspection with its calibration renders, platform crop renders)
# takes seconds to minutes per task: it goes to its own queue, consumed by its own worker(s), so a flood of
# uploads never delays matching, the reaper or settlement on the default queue. `make run`, compose and the
# test farm start one worker per queue (`-Q celery` with beat, `-Q heavy`); a worker started without -Q
# consumes both, so a one-process setup still does everything.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_HEAVY_QUEUE = "heavy"
CELERY_TASK_QUEUES = {CELERY_TASK_DEFAULT_QUEUE: {}, CELERY_HEAVY_QUEUE: {}}
CELERY_TASK_ROUTES = {
    "scenes.inspect": {"queue": CELERY_HEAVY_QUEUE},
    "verification.platform_crop": {"queue": CELERY_HEAVY_QUEUE},
    "verification.platform_prewarm": {"queue": CELERY_HEAVY_QUEUE},
    "verification.references_render": {"queue": CELERY_HEAVY_QUEUE},
}
# Whether a render lease's result is checked is drawn when it is granted (verification.conf) ...
VERIFICATION_SAMPLE_AT_LEASE = env_bool("VERIFICATION_SAMPLE_AT_LEASE", True)
# ... and a heavy worker renders a sampled lease's reference crops while the node renders it.
VERIFICATION_REFERENCES_AHEAD = env_bool("VERIFICATION_REFERENCES_AHEAD", True)
# ... or, with that off, loads an accepted job's scene before the job's first platform crop.
VERIFICATION_PLATFORM_PREWARM = env_bool("VERIFICATION_PLATFORM_PREWARM", not VERIFICATION_REFERENCES_AHEAD)
CELERY_BEAT_SCHEDULE: dict = {
    "reap-leases": {"task": "dispatch.reap", "schedule": float(os.environ.get("REAP_EVERY_SECONDS", "10"))},
    # The reaper syncs the nodes whose silence changed; this re-derives every node's status (nodes.services).
    "sweep-node-status": {
        "task": "dispatch.node_status_sweep",
        "schedule": float(os.environ.get("NODE_STATUS_SWEEP_SECONDS", "300")),
    },
    # What agents uploaded for leases that ended without a result, once their URLs have expired.
    "clear-lease-uploads": {
        "task": "dispatch.lease_uploads_clear",
        "schedule": float(os.environ.get("UPLOADS_CLEAR_SECONDS", "300")),
    },
    # Heartbeats that change nothing but times wait in Redis until this writes them (dispatch.heartbeats).
    "flush-heartbeats": {
        "task": "dispatch.heartbeats_flush",
        "schedule": float(os.environ.get("HEARTBEAT_FLUSH_SECONDS", "5")),
    },
    # The heartbeat pace follows the number of nodes online (nodes.services.heartbeat_pace_update).
    "heartbeat-pace": {"task": "nodes.heartbeat_pace", "schedule": 30.0},
    "mature-earnings": {"task": "payments.mature_earnings", "schedule": 15 * 60.0},
    "resend-payouts": {"task": "payments.resend_payouts", "schedule": 5 * 60.0},
    "verification-resume": {"task": "verification.resume", "schedule": 30.0},
    # Each online node's canary is chosen ahead of its draw (verification.services.canary_offers_renew).
    "canary-offers": {
        "task": "verification.canary_offers",
        "schedule": float(os.environ.get("CANARY_OFFERS_EVERY_SECONDS", "30")),
    },
    "assemble-stills": {"task": "jobs.assemble_missing", "schedule": 5 * 60.0},  # stills whose message was lost
}

# --- money ----------------------------------------------------------------------------------
MICRO = 1_000_000  # micro-tokens per token
PLATFORM_FEE_BPS = int(os.environ.get("PLATFORM_FEE_BPS", "1000"))  # 10 %
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
# The simulated provider mints tokens for free: only where someone turned it on (`make run` does).
PAYMENTS_DEV_PROVIDER = env_bool("PAYMENTS_DEV_PROVIDER", False)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "marketplace.accounts.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON bodies only (the scene upload takes multipart itself): a form's strings are not the documented types.
    "DEFAULT_PARSER_CLASSES": ["marketplace.api.parsers.StorableJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "marketplace.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "marketplace.api.errors.exception_handler",  # RFC 9457 problem details
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Render marketplace API",
    "VERSION": "1.0.0",
    "DESCRIPTION": "Upload Blender scenes, get a quote, render on the market's GPU nodes and download the frames "
    "(artists); register nodes, follow earnings and request payouts (providers); review disputes "
    "(admins); and the agent API the render nodes use. Amounts are given twice: integer "
    "micro-tokens (1 token = 1,000,000) and, in the matching `*_tokens` field, the same amount as a "
    "decimal string. Every error is an RFC 9457 problem details body (`application/problem+json`).",
    "SCHEMA_PATH_PREFIX": r"/api/v1/",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "marketplace.api.schema.problem_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "JobStateEnum": "marketplace.jobs.states.JobState",
        "FrameStateEnum": "marketplace.jobs.states.FrameState",
        "NodeStatusEnum": "marketplace.nodes.models.WorkerNode.Status",
        "TopUpDisputeStatusEnum": "marketplace.payments.models.TopUp.DisputeStatus",
        "NodeSandboxEnum": "marketplace.nodes.models.WorkerNode.Sandbox",
        "AgentSandboxEnum": ["enforced", "unsandboxed"],
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# Structured logs (workers.logs, marketplace.logs): JSON lines in production, key=value with DEBUG; LOG_FORMAT
# (json or console) overrides either way. Ids (request, user, node, lease, frame, job, task) are bound per context.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "").strip().lower() or ("console" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"structured": {"()": "workers.logs.formatter", "fmt": LOG_FORMAT}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024 * 1024  # also the cap for a rendered frame PUT by an agent

# --- dispatch timings (see marketplace/dispatch/conf.py) -------------------------------------
DISPATCH_LEASE_SECONDS = int(os.environ.get("DISPATCH_LEASE_SECONDS", "90"))
NODE_HEARTBEAT_SECONDS = int(os.environ.get("NODE_HEARTBEAT_SECONDS", "10"))
NODE_OFFLINE_AFTER_SECONDS = int(os.environ.get("NODE_OFFLINE_AFTER_SECONDS", "60"))
# The heartbeat pace grows with the farm up to this, keeping its beats near NODE_HEARTBEATS_PER_SECOND.
NODE_HEARTBEAT_MAX_SECONDS = int(os.environ.get("NODE_HEARTBEAT_MAX_SECONDS", "60"))
NODE_HEARTBEATS_PER_SECOND = int(os.environ.get("NODE_HEARTBEATS_PER_SECOND", "500"))
AGENT_BROKER_PUBLIC_URL = os.environ.get("AGENT_BROKER_PUBLIC_URL", "")
REAP_EVERY_SECONDS = float(os.environ.get("REAP_EVERY_SECONDS", "10"))
# Extra Blender series of the market (inspection, calibration, platform crops): `<dir>/runtimes/<series>/`.
# Prometheus scrapes /metrics with `Authorization: Bearer <OPS_METRICS_TOKEN>` (admins' sessions work too).
OPS_METRICS_TOKEN = os.environ.get("OPS_METRICS_TOKEN", "")
SCENE_RUNTIMES_CACHE_DIR = os.environ.get("BLENDER_RUNTIMES_DIR", str(VAR_DIR / "blender"))
