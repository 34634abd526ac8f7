"""Settings, read from the environment (see the table in README.md).

With no variables set, the app runs embedded: SQLite, the in-memory channel layer, the generation
worker inside the server process, and the local model. DATABASE_URL switches to PostgreSQL and
REDIS_URL to Redis (channels-redis) with separate `runworker` processes.
"""

import os
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_decimal, env_float, env_int, env_list, env_models, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

PRODUCTION = env_str("DJANGO_ENV", "development") == "production"
DEBUG = env_bool("DJANGO_DEBUG", default=not PRODUCTION)

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_ENV=production")
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production-0123456789"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "" if PRODUCTION else "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
# The API answers a CSRF failure in its JSON error shape; pages get Django's page.
CSRF_FAILURE_VIEW = "chat.views.csrf_failure"

INSTALLED_APPS = [
    "daphne",
    # Before "channels": chat's `runworker` (lease reaper, graceful SIGTERM) takes precedence.
    "chat",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Django's, plus the 503 answer to a database outage (chat/middleware.py).
    "chat.middleware.SessionMiddleware",
    # The language: the set_language cookie, else the browser's Accept-Language (Languages below).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "chat.middleware.json_api_bodies",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "chat.middleware.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    # One bounded pool per process (psycopg_pool, built into Django): the server holds at most
    # processes x CHAT_DB_POOL_MAX_SIZE connections however many sockets are open, and a request that
    # waits CHAT_DB_POOL_TIMEOUT seconds for a free one fails with `unavailable` instead of hanging.
    # A pool needs CONN_MAX_AGE=0: each database call hands its connection back when it ends.
    _pool = {
        "min_size": env_int("CHAT_DB_POOL_MIN_SIZE", 2),
        "max_size": env_int("CHAT_DB_POOL_MAX_SIZE", 10),
        "timeout": env_float("CHAT_DB_POOL_TIMEOUT", 5.0),
    }
    if not (0 <= _pool["min_size"] <= _pool["max_size"] and _pool["max_size"] >= 1 and _pool["timeout"] > 0):
        raise ImproperlyConfigured(
            "The database pool needs 0 <= CHAT_DB_POOL_MIN_SIZE <= CHAT_DB_POOL_MAX_SIZE, "
            f"CHAT_DB_POOL_MAX_SIZE >= 1 and CHAT_DB_POOL_TIMEOUT > 0; got {_pool}"
        )
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0, conn_health_checks=True)}
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        pool=_pool,
        # Names this process's connections in pg_stat_activity (the pool test counts them by it).
        application_name=env_str("CHAT_DB_APPLICATION_NAME", f"streamchat-{os.getpid()}"),
    )
else:
    DATABASES = {
        "default": {
            # Django's, with the process's write transactions taken in turn (config/sqlite/base.py).
            "ENGINE": "config.sqlite",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            # Kept open: a new SQLite connection (Django's functions registered, the PRAGMAs below) costs
            # ~0.7 ms of CPU, paid on every database call with CONN_MAX_AGE=0 (each claim, checkpoint,
            # send). One connection per thread that uses the database: asgiref's one, the lease thread.
            "CONN_MAX_AGE": None,
            # WAL lets the worker checkpoint while pages read; the timeout absorbs short write locks.
            "OPTIONS": {
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
            },
            # The test database is a file in WAL mode too, not SQLite in memory: there a second writing
            # thread fails at once ("database table is locked", shared cache) where a file's waits, and
            # the in-process worker writes on a thread of its own (chat.engine.resilience).
            "TEST": {"NAME": str(Path(tempfile.gettempdir()) / f"streamchat-test-{os.getpid()}.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
CHAT_REDIS_PREFIX = env_str("CHAT_REDIS_PREFIX", "chat")  # every Redis key and channel of this deployment
if REDIS_URL:
    # redis-py's default 5 s read timeout equals channels_redis' 5 s blocking pop: give reads room.
    from redis.exceptions import ConnectionError as RedisConnectionError

    # After a Redis restart every pooled connection is dead: retry a command once on a new one.
    _redis_host = {
        "address": REDIS_URL,
        "socket_timeout": 30,
        "socket_keepalive": True,
        "health_check_interval": 15,
        "retry_on_error": [RedisConnectionError],
    }
    # Live frames go through Redis pub/sub (no capacity limit, ~6x cheaper per message than the
    # list-based layer); generation jobs go through the list-based layer, where exactly one worker
    # takes each job. See docs/deployment.md.
    # CHAT_FRAME_LAYER=core puts live frames on the list-based layer instead, with a capacity per
    # channel: the fault tests use a tiny one to force dropped frames (clients recover by seq/offset).
    _frame_layer = (
        {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [_redis_host],
                "prefix": CHAT_REDIS_PREFIX,
                "capacity": env_int("CHAT_FRAME_LAYER_CAPACITY", 100),
                "expiry": env_int("CHAT_FRAME_LAYER_EXPIRY", 60),
            },
        }
        if env_str("CHAT_FRAME_LAYER", "pubsub") == "core"
        else {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [_redis_host], "prefix": CHAT_REDIS_PREFIX},
        }
    )
    CHANNEL_LAYERS = {
        "default": _frame_layer,
        "jobs": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [_redis_host],
                "prefix": CHAT_REDIS_PREFIX + "-jobs",
                "capacity": env_int("CHAT_JOB_QUEUE_CAPACITY", 1000),
                "expiry": 600,
            },
        },
    }
else:
    # channels' in-memory layer, without its sweep of every channel on every frame (chat/memory_layer.py).
    # Its defaults bite at C=500: a capacity of 100 on the job channel refused the sends beyond 100 that
    # landed before the worker took them (`queue_full`), and a job that waited 60 s for a slot expired, its
    # reply left pending until the pending expiry. Jobs get the Redis job queue's capacity and expiry; a
    # socket's frame channel room for a few seconds of a lagging loop (a frame over it is recovered by seq).
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "chat.memory_layer.EmbeddedChannelLayer", "CONFIG": {"capacity": 1000}},
        "jobs": {
            "BACKEND": "chat.memory_layer.EmbeddedChannelLayer",
            "CONFIG": {"capacity": env_int("CHAT_JOB_QUEUE_CAPACITY", 1000), "expiry": 600},
        },
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"  # the fallback; see Languages at the end
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {"httpx2": {"level": "WARNING"}, "httpcore2": {"level": "WARNING"}},
}

# Security headers; the Content-Security-Policy is set by chat.middleware (no 'unsafe-inline').
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# The chat script reads the CSRF token from the page, never from the cookie.
CSRF_COOKIE_HTTPONLY = True
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- Providers -------------------------------------------------------------------------------
# Secrets stay here, in process memory: they are never written to the database, frames or pages.
# Every list of models may give a model its own limits in tokens: MODEL@CONTEXT or MODEL@CONTEXT/MAX_OUTPUT
# (e.g. llama3.1:8b@131072/8192). They end up in MODEL_LIMITS, by model reference ("provider:model").
OPENAI_API_KEY = env_str("OPENAI_API_KEY")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL")
_openai_models = env_models("OPENAI_MODELS", "gpt-4o-mini,gpt-4o,gpt-4.1")
OPENAI_MODELS = list(_openai_models)
# Which OpenAI models go through the Responses API (reasoning summaries stream as a `reasoning` part);
# the others use Chat Completions. By default the reasoning families of OPENAI_MODELS (o1, o3, o4, gpt-5).
OPENAI_REASONING_FAMILIES = ("o1", "o3", "o4", "gpt-5")
OPENAI_RESPONSES_MODELS = env_list(
    "OPENAI_RESPONSES_MODELS", ",".join(m for m in OPENAI_MODELS if m.startswith(OPENAI_REASONING_FAMILIES))
)
# Of those, the ones that run in background mode: the response is kept at OpenAI (for a while) so that,
# should the worker die, another one reattaches to it and goes on where it was (docs/deployment.md).
OPENAI_BACKGROUND_MODELS = env_list("OPENAI_BACKGROUND_MODELS")
for _name, _models, _within, _within_name in (
    ("OPENAI_RESPONSES_MODELS", OPENAI_RESPONSES_MODELS, OPENAI_MODELS, "OPENAI_MODELS"),
    ("OPENAI_BACKGROUND_MODELS", OPENAI_BACKGROUND_MODELS, OPENAI_RESPONSES_MODELS, "OPENAI_RESPONSES_MODELS"),
):
    if _outside := [model for model in _models if model not in _within]:
        raise ImproperlyConfigured(f"{_name}: {', '.join(_outside)} not in {_within_name}")
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY")
ANTHROPIC_BASE_URL = env_str("ANTHROPIC_BASE_URL")
_anthropic_models = env_models("ANTHROPIC_MODELS", "claude-sonnet-4-5,claude-haiku-4-5")
ANTHROPIC_MODELS = list(_anthropic_models)
# Named OpenAI-compatible servers: OPENAI_COMPATIBLE_SERVERS=ollama,vllm then, per NAME,
# OPENAI_COMPATIBLE_<NAME>_BASE_URL (required), _API_KEY (optional), _MODELS (comma list).
_compatible_models = {
    name.lower(): env_models(f"OPENAI_COMPATIBLE_{name.upper()}_MODELS")
    for name in env_list("OPENAI_COMPATIBLE_SERVERS")
}
OPENAI_COMPATIBLE_SERVERS = [
    {
        "name": name,
        "base_url": env_str(f"OPENAI_COMPATIBLE_{name.upper()}_BASE_URL"),
        "api_key": env_str(f"OPENAI_COMPATIBLE_{name.upper()}_API_KEY"),
        "models": list(models),
    }
    for name, models in _compatible_models.items()
]
MODEL_LIMITS = {
    f"{provider}:{model}": limits
    for provider, models in {"openai": _openai_models, "anthropic": _anthropic_models, **_compatible_models}.items()
    for model, limits in models.items()
    if limits
}
LOCAL_MODEL_ENABLED = env_bool("LOCAL_MODEL_ENABLED", True)
LOCAL_MODEL_PATH = env_str("LOCAL_MODEL_PATH")
LOCAL_MODEL_THREADS = env_int("LOCAL_MODEL_THREADS", 2)
LOCAL_MODEL_CONTEXT = env_int("LOCAL_MODEL_CONTEXT", 2048)
# The embedded model repeats itself without a penalty (SmolLM2 looped one line for 747 tokens on a
# plain coding question); a conversation may set its own between 1 (none) and 2.
LOCAL_MODEL_REPEAT_PENALTY = env_float("LOCAL_MODEL_REPEAT_PENALTY", 1.1)
if not 1.0 <= LOCAL_MODEL_REPEAT_PENALTY <= 2.0:
    raise ImproperlyConfigured(f"LOCAL_MODEL_REPEAT_PENALTY must be from 1.0 to 2.0, got {LOCAL_MODEL_REPEAT_PENALTY}")
CHAT_DEFAULT_MODEL = env_str("CHAT_DEFAULT_MODEL", "local:smollm2-135m-instruct")

# --- Streaming engine ------------------------------------------------------------------------
CHAT_MAX_MESSAGE_CHARS = env_int("CHAT_MAX_MESSAGE_CHARS", 32000)
CHAT_MAX_OUTPUT_TOKENS = env_int("CHAT_MAX_OUTPUT_TOKENS", 4096)
# Anthropic extended thinking: each of ANTHROPIC_THINKING_MODELS (by default every Anthropic model) may
# think for up to ANTHROPIC_THINKING_BUDGET tokens of its reply budget; 0 switches thinking off.
# Models listed in ANTHROPIC_THINKING_ADAPTIVE_MODELS instead think as long as they judge best
# (`thinking: {"type": "adaptive"}`, steered by a conversation's reasoning effort): no budget for them.
ANTHROPIC_THINKING_BUDGET = env_int("ANTHROPIC_THINKING_BUDGET", 0)
ANTHROPIC_THINKING_ADAPTIVE_MODELS = env_list("ANTHROPIC_THINKING_ADAPTIVE_MODELS")
ANTHROPIC_THINKING_MODELS = [
    model
    for model in env_list("ANTHROPIC_THINKING_MODELS", ",".join(ANTHROPIC_MODELS))
    if model not in ANTHROPIC_THINKING_ADAPTIVE_MODELS  # adaptive wins
]
# A conversation may set its own thinking budget on these models (0: off) whatever the default.
for _name, _models in (
    ("ANTHROPIC_THINKING_MODELS", ANTHROPIC_THINKING_MODELS),
    ("ANTHROPIC_THINKING_ADAPTIVE_MODELS", ANTHROPIC_THINKING_ADAPTIVE_MODELS),
):
    for _model in _models:
        if _model not in _anthropic_models:
            raise ImproperlyConfigured(f"{_name}: {_model!r} is not in ANTHROPIC_MODELS")
if ANTHROPIC_THINKING_BUDGET:
    # Anthropic counts thinking in `max_tokens`, the reply budget (chat/prompts.py: the model's MAX_OUTPUT,
    # else CHAT_MAX_OUTPUT_TOKENS, at most half its context, 200,000 tokens unless its entry says).
    for _model in ANTHROPIC_THINKING_MODELS:
        _limits = _anthropic_models[_model]
        _reply_budget = min(
            _limits.get("max_output_tokens", CHAT_MAX_OUTPUT_TOKENS), _limits.get("context_tokens", 200_000) // 2
        )
        if not 1024 <= ANTHROPIC_THINKING_BUDGET < _reply_budget:
            raise ImproperlyConfigured(
                f"ANTHROPIC_THINKING_BUDGET must be 0 (off) or at least 1024 and below the reply budget of every "
                f"thinking model; {_model} replies in {_reply_budget} tokens, got {ANTHROPIC_THINKING_BUDGET}"
            )
# The HTTP client the provider SDKs send with: aiohttp (less CPU per streamed token) or the SDKs' own httpx.
CHAT_PROVIDER_TRANSPORT = env_str("CHAT_PROVIDER_TRANSPORT", "aiohttp")
if CHAT_PROVIDER_TRANSPORT not in ("aiohttp", "httpx"):
    raise ImproperlyConfigured(f"CHAT_PROVIDER_TRANSPORT must be aiohttp or httpx, got {CHAT_PROVIDER_TRANSPORT!r}")
CHAT_TIMEOUT_CONNECT = env_float("CHAT_TIMEOUT_CONNECT", 10.0)
CHAT_TIMEOUT_FIRST_TOKEN = env_float("CHAT_TIMEOUT_FIRST_TOKEN", 60.0)
CHAT_TIMEOUT_IDLE = env_float("CHAT_TIMEOUT_IDLE", 30.0)
CHAT_TIMEOUT_TOTAL = env_float("CHAT_TIMEOUT_TOTAL", 600.0)
CHAT_RETRY_ATTEMPTS = env_int("CHAT_RETRY_ATTEMPTS", 2)
CHAT_RETRY_BASE_DELAY = env_float("CHAT_RETRY_BASE_DELAY", 0.5)
CHAT_RETRY_MAX_DELAY = env_float("CHAT_RETRY_MAX_DELAY", 20.0)
# Frame coalescing adapts to load: the replies of a process share CHAT_FRAME_RATE frames a second;
# the window between two frames of a reply is at least CHAT_FRAME_MIN_WINDOW_MS (a token slower than
# that goes at once) and at most CHAT_FRAME_WINDOW_MS. 500 and 150 ms: alone a reply's tokens go at once;
# from 75 replies a process, each reply gets a frame about every 150 ms (docs/benchmarks.md, "Fewer frames").
CHAT_FRAME_RATE = env_float("CHAT_FRAME_RATE", 500.0)
CHAT_FRAME_MIN_WINDOW_MS = env_int("CHAT_FRAME_MIN_WINDOW_MS", 15)
CHAT_FRAME_WINDOW_MS = env_int("CHAT_FRAME_WINDOW_MS", 150)
CHAT_FRAME_MAX_CHARS = env_int("CHAT_FRAME_MAX_CHARS", 4096)
CHAT_CHECKPOINT_SECONDS = env_float("CHAT_CHECKPOINT_SECONDS", 1.0)
CHAT_LEASE_SECONDS = env_float("CHAT_LEASE_SECONDS", 10.0)
# A background-mode reply whose worker died is taken over by another worker at most this many times;
# then (or with 0) it ends `interrupted`, as every other reply does.
CHAT_RESUME_ATTEMPTS = env_int("CHAT_RESUME_ATTEMPTS", 3)
CHAT_PENDING_EXPIRY_SECONDS = env_float("CHAT_PENDING_EXPIRY_SECONDS", 600.0)
CHAT_SHUTDOWN_GRACE_SECONDS = env_float("CHAT_SHUTDOWN_GRACE_SECONDS", 20.0)
CHAT_SSE_HEARTBEAT_SECONDS = env_float("CHAT_SSE_HEARTBEAT_SECONDS", 15.0)
CHAT_WORKER_CHANNEL = env_str("CHAT_WORKER_CHANNEL", "chat-generate")
CHAT_WORKER_CONCURRENCY = env_int("CHAT_WORKER_CONCURRENCY", 500)
# Replies of one user waiting for a free worker slot; one more is refused with `queue_full`.
CHAT_MAX_QUEUED_PER_USER = env_int("CHAT_MAX_QUEUED_PER_USER", 5)
# A worker writes a heartbeat every maintenance round (2 s); /readyz counts workers seen within this.
CHAT_WORKER_HEARTBEAT_TTL_SECONDS = env_float("CHAT_WORKER_HEARTBEAT_TTL_SECONDS", 6.0)
# Embedded mode runs the worker inside the server process; with Redis, `runworker` processes do.
CHAT_WORKER_IN_PROCESS = env_bool("CHAT_WORKER_IN_PROCESS", not REDIS_URL)
CHAT_SIGNUP_ENABLED = env_bool("CHAT_SIGNUP_ENABLED", True)
CHAT_WS_MAX_FRAME_BYTES = env_int("CHAT_WS_MAX_FRAME_BYTES", 256 * 1024)
# The OpenAI-compatible API (/v1/): a call carries its whole history, so its body may be larger than a frame.
CHAT_API_MAX_BODY_BYTES = env_int("CHAT_API_MAX_BODY_BYTES", 1024 * 1024)

# --- Abuse limits (chat/limits.py); 0 switches a limit off ------------------------------------
# Counted in the database when a reply would start, so they hold across server processes.
CHAT_MAX_CONCURRENT_PER_USER = env_int("CHAT_MAX_CONCURRENT_PER_USER", 6)  # pending + streaming replies
CHAT_MESSAGES_PER_MINUTE = env_int("CHAT_MESSAGES_PER_MINUTE", 20)  # replies started (send/retry/edit/continue)
# How long a process keeps a user's group policies (the limits of every send); 0: read them every time.
CHAT_LIMITS_CACHE_SECONDS = env_float("CHAT_LIMITS_CACHE_SECONDS", 5.0)
CHAT_DAILY_TOKEN_BUDGET = env_int("CHAT_DAILY_TOKEN_BUDGET", 200_000)  # input + output tokens per UTC day
CHAT_WS_FRAMES_PER_SECOND = env_float("CHAT_WS_FRAMES_PER_SECOND", 10.0)  # per socket, bursts of twice that
# Live sockets and SSE streams re-check their login session this often (logout closes them at once).
CHAT_SESSION_CHECK_SECONDS = env_float("CHAT_SESSION_CHECK_SECONDS", 60.0)

# --- History: search, share links, import ---------------------------------------------------
# PostgreSQL's text search configuration (stemming, stop words) for the search index: `english`,
# `simple`, `german`... Changing it needs `manage.py search_reindex`. SQLite's FTS5 index always
# uses the porter stemmer over unicode61.
CHAT_SEARCH_CONFIG = env_str("CHAT_SEARCH_CONFIG", "english")
CHAT_SEARCH_RESULTS = env_int("CHAT_SEARCH_RESULTS", 20)  # results one search answers with
CHAT_IMPORT_MAX_BYTES = env_int("CHAT_IMPORT_MAX_BYTES", 50 * 1024 * 1024)  # largest upload (and unpacked JSON)
# A model ('provider:model') that writes each conversation's title after its first reply; empty: off.
CHAT_TITLE_MODEL = env_str("CHAT_TITLE_MODEL", "")

# --- Attachments (issue 15): files in a conversation, chat/attachments.py ----------------------
# Where files live: the local filesystem under CHAT_ATTACHMENTS_DIR (embedded), or any S3-compatible
# store through django-storages once CHAT_S3_BUCKET is set.
CHAT_ATTACHMENTS_DIR = env_str("CHAT_ATTACHMENTS_DIR", str(BASE_DIR / "data" / "attachments"))
CHAT_S3_BUCKET = env_str("CHAT_S3_BUCKET", "")
CHAT_S3_ENDPOINT_URL = env_str("CHAT_S3_ENDPOINT_URL", "")  # empty: AWS itself
CHAT_S3_REGION = env_str("CHAT_S3_REGION", "")
CHAT_S3_ACCESS_KEY_ID = env_str("CHAT_S3_ACCESS_KEY_ID", "")
CHAT_S3_SECRET_ACCESS_KEY = env_str("CHAT_S3_SECRET_ACCESS_KEY", "")
CHAT_S3_PREFIX = env_str("CHAT_S3_PREFIX", "attachments")
CHAT_ATTACHMENT_MAX_BYTES = env_int("CHAT_ATTACHMENT_MAX_BYTES", 20 * 1024 * 1024)  # one file
CHAT_ATTACHMENTS_PER_MESSAGE = env_int("CHAT_ATTACHMENTS_PER_MESSAGE", 10)
CHAT_ATTACHMENT_STORAGE_PER_USER = env_int("CHAT_ATTACHMENT_STORAGE_PER_USER", 1024 * 1024 * 1024)  # bytes
# Which kinds of file may be attached: any of image, pdf, text.
CHAT_ATTACHMENT_KINDS = env_list("CHAT_ATTACHMENT_KINDS", "image,pdf,text")
# Of a PDF's extracted text, at most this many characters are stored (the prompt trims further).
CHAT_ATTACHMENT_TEXT_MAX_CHARS = env_int("CHAT_ATTACHMENT_TEXT_MAX_CHARS", 200_000)
# Models that see images / take PDFs as documents ('provider:model'), besides those their provider
# declares (chat/providers/registry.py); others get a PDF's text and refuse images.
CHAT_VISION_MODELS = env_list("CHAT_VISION_MODELS", "")
CHAT_PDF_MODELS = env_list("CHAT_PDF_MODELS", "")
if CHAT_S3_BUCKET:
    _s3_options = {
        "bucket_name": CHAT_S3_BUCKET,
        "endpoint_url": CHAT_S3_ENDPOINT_URL or None,
        "region_name": CHAT_S3_REGION or None,
        "access_key": CHAT_S3_ACCESS_KEY_ID or None,
        "secret_key": CHAT_S3_SECRET_ACCESS_KEY or None,
        "location": CHAT_S3_PREFIX,
        "default_acl": None,
        "querystring_auth": True,
        "file_overwrite": False,
    }
    _attachments_storage = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": _s3_options}
else:
    _attachments_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": CHAT_ATTACHMENTS_DIR},
    }
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "attachments": _attachments_storage,
}
# --- Teams: groups' limits, prices and money budgets (chat/teams.py, chat/costs.py) -------------
# A user in no group with a policy has these; a group's policy may be more generous. 0: no limit.
CHAT_CURRENCY = env_str("CHAT_CURRENCY", "USD")  # the currency of ModelPrice and every budget (a label)
CHAT_DAILY_COST_BUDGET = env_decimal("CHAT_DAILY_COST_BUDGET", "0")  # per user per UTC day
CHAT_MONTHLY_COST_BUDGET = env_decimal("CHAT_MONTHLY_COST_BUDGET", "0")  # per user per UTC month
# --- Review scopes, retention (issue 18) ----------------------------------------------------
# Shown to every user on their settings page, beside which of their groups have reviewers.
CHAT_REVIEW_POLICY = env_str(
    "CHAT_REVIEW_POLICY",
    "Staff with a review scope on one of your groups may read your conversations to keep the service "
    "safe; every reading is recorded.",
)
# The worker's maintenance deletes expired conversations this often (first a minute after it starts), a
# batch per round until none is left.
CHAT_RETENTION_INTERVAL_SECONDS = env_float("CHAT_RETENTION_INTERVAL_SECONDS", 3600.0)
CHAT_RETENTION_BATCH_SIZE = env_int("CHAT_RETENTION_BATCH_SIZE", 200)  # conversations deleted per transaction

# --- Single sign-on: OpenID Connect (chat/sso.py, mozilla-django-oidc) ------------------------
# On when a client id is set, with the issuer (its discovery document gives the endpoints) or the
# endpoints themselves; each endpoint variable overrides discovery.
CHAT_OIDC_CLIENT_ID = env_str("CHAT_OIDC_CLIENT_ID", "")
CHAT_OIDC_CLIENT_SECRET = env_str("CHAT_OIDC_CLIENT_SECRET", "")
CHAT_OIDC_ISSUER = env_str("CHAT_OIDC_ISSUER", "").rstrip("/")
CHAT_OIDC_AUTHORIZATION_ENDPOINT = env_str("CHAT_OIDC_AUTHORIZATION_ENDPOINT", "")
CHAT_OIDC_TOKEN_ENDPOINT = env_str("CHAT_OIDC_TOKEN_ENDPOINT", "")
CHAT_OIDC_USERINFO_ENDPOINT = env_str("CHAT_OIDC_USERINFO_ENDPOINT", "")
CHAT_OIDC_JWKS_ENDPOINT = env_str("CHAT_OIDC_JWKS_ENDPOINT", "")
CHAT_OIDC_LOGOUT_ENDPOINT = env_str("CHAT_OIDC_LOGOUT_ENDPOINT", "")  # RP-initiated logout (end_session_endpoint)
CHAT_OIDC_SCOPES = env_str("CHAT_OIDC_SCOPES", "openid email profile")
CHAT_OIDC_SIGN_ALGO = env_str("CHAT_OIDC_SIGN_ALGO", "RS256")
# The claim listing the user's groups: their groups here are set to exactly these at every login
# (created if missing). Empty: groups are managed here only.
CHAT_OIDC_GROUPS_CLAIM = env_str("CHAT_OIDC_GROUPS_CLAIM", "groups")
CHAT_OIDC_NAME = env_str("CHAT_OIDC_NAME", "single sign-on")  # the login button: "Sign in with <name>"
CHAT_OIDC_TIMEOUT = env_float("CHAT_OIDC_TIMEOUT", 10.0)  # seconds for each call to the provider
# Local username/password login (and sign-up). Off: accounts sign in through the provider only.
CHAT_PASSWORD_LOGIN = env_bool("CHAT_PASSWORD_LOGIN", True)
AUTHENTICATION_BACKENDS = ["chat.sso.PasswordBackend", "chat.sso.OidcBackend"]
# --- Languages (Django i18n) ------------------------------------------------------------------
# English and Spanish. A person gets the language their browser asks for (Accept-Language) until they
# pick one in the user menu (the django_language cookie). The catalog is locale/es/LC_MESSAGES/django.po,
# compiled by scripts/bootstrap.sh (`compilemessages`); no .mo file is committed.
LANGUAGES = [("en", "English"), ("es", "Español")]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_SAMESITE = "Lax"

# --- Feedback (thumbs up / down on a reply) ---------------------------------------------------
CHAT_FEEDBACK_COMMENT_MAX_CHARS = env_int("CHAT_FEEDBACK_COMMENT_MAX_CHARS", 2000)  # longest comment
