"""Settings: config/default.yaml, then config/<MEMORY_ENV>.yaml, then environment variables.

Nothing here runs at import time: `load_settings()` builds a `Settings`, and tests
construct one directly.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "config"

CHAT_PROVIDERS = ("openai", "anthropic", "generic", "none")
EMBEDDING_PROVIDERS = ("local", "openai", "generic")
FTS_CONFIG_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"


class SettingsError(ValueError):
    """A setting has a value the service cannot run with."""


@dataclass(frozen=True)
class MemSettings:
    enabled: bool = True
    chat_provider: str = "none"
    embedding_provider: str = "local"
    embedding_model: str = "all-MiniLM-L6-v2"
    embedding_dimensions: int = 384
    embedding_base_url: str | None = None
    embedding_api_key: str | None = field(default=None, repr=False)
    embedding_cache_size: int = 10_000
    embedding_cache_ttl_seconds: float = 3600.0
    embedding_batch_size: int = 64
    # The local model: how it runs (app/providers/local_model.py), on how many threads per
    # forward pass, how many forward passes at once, and how long a lone text waits for company.
    # onnx-q8 (8 bits per block of 32): LoCoMo fused recall@10 67.65 % against 67.78 % on fp32
    # (`onnx`), dense 50.68 % on both, and 20-30 % less time a forward pass.
    embedding_runtime: str = "onnx-q8"
    # The runtime of search queries alone ("same": embedding_runtime). onnx-int8 over fp32
    # memories embeds a question in 2.45 instead of 4.06 ms, but LoCoMo fused recall@10 fell by
    # 0.44-0.57 points in three runs (the issue allows 0.5), so it is an option, not the default.
    embedding_query_runtime: str = "same"
    # 2: on this project's 2-core reference machine, LoCoMo search p50/p95 12.98/17.34 ms against
    # 14.46/18.76 with 1, and 86 against 65 adds/s at concurrency 16 (load_encoder caps it at the
    # machine's cores).
    embedding_threads: int = 2
    embedding_workers: int = 1
    embedding_batch_window_ms: float = 1.0
    embedding_onnx_cache_dir: str | None = None
    chat_model: str = "gpt-4o-mini"
    chat_base_url: str | None = None
    chat_api_key: str | None = field(default=None, repr=False)
    chat_json_mode: bool = True
    chat_max_tokens: int = 2000
    pipeline_mode: str = "single"  # single (one LLM call per add) or two-call (extract, then decide)
    # None = by provider: openai and anthropic models see images, a generic server's may not.
    chat_vision: bool | None = None
    provider_timeout_seconds: float = 30.0
    provider_max_retries: int = 2
    provider_concurrency: int = 8
    search_default_top_k: int = 10
    search_max_top_k: int = 100
    search_entity_boost_enabled: bool = True
    search_signals: tuple[str, ...] = ("semantic", "keyword", "entity", "graph")
    search_fts_config: str = "simple"
    # Server-Timing on search answers: off by default, since it shows a query-embedding cache hit
    # (a side channel); the benchmark turns it on to see server time apart from the network.
    server_timing: bool = False
    short_term_ttl_hours: float = 24.0
    session_window_size: int = 20
    list_max_page_size: int = 100


@dataclass(frozen=True)
class LimitSettings:
    """Platform defaults of the per-tenant limits; a tenant's own values (control plane) win.

    Rates are per tenant and per key role: `user` covers the anon key (with a user's token),
    `service` the service_role key. An add (POST /mem/v1/memories) counts as a request too.
    """

    enabled: bool = True
    user_requests_per_second: int = 50
    user_adds_per_second: int = 10
    service_requests_per_second: int = 100
    service_adds_per_second: int = 20
    max_in_flight: int = 16  # concurrent requests per tenant; more answer 429 at once
    embedding_queue: int = 256  # texts a tenant may have waiting for the local embedder


@dataclass(frozen=True)
class QueueSettings:
    """Async adds (sql/mem/005_jobs.sql): the workers each process runs and how they retry."""

    workers: int = 2  # per process; 0 = this process only enqueues (another one runs the jobs)
    max_attempts: int = 5  # a job failing this often for a retryable reason is FAILED
    # A claimed job's lease, renewed every third of it while the job runs; a job whose lease has
    # run out (its process died) is taken again after it.
    lease_seconds: float = 30.0
    retry_base_seconds: float = 2.0  # backoff: base * 2^(attempt-1), jittered, capped by retry_max
    retry_max_seconds: float = 300.0
    # How often every tenant is looked at for jobs this process was not told about (enqueued by
    # another replica, retries falling due, leases of dead workers running out).
    scan_seconds: float = 5.0


@dataclass(frozen=True)
class Settings:
    env: str = "default"
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    max_body_bytes: int = 1_048_576
    database_url: str | None = field(default=None, repr=False)
    data_dir: Path = PROJECT_ROOT / ".data"
    pool_min_size: int = 0
    pool_max_size: int = 10
    pool_idle_seconds: float = 300.0
    max_pools: int = 100
    statement_timeout_ms: int = 15_000
    # None = the server's max_connections (SHOW max_connections) less the reserve.
    db_connection_budget: int | None = None
    db_connection_reserve: int = 15
    pool_acquire_timeout_seconds: float = 2.0
    admin_key: str | None = field(default=None, repr=False)
    # A scrape-only key for /metrics (Prometheus' `authorization` credentials), so the scraper
    # need not hold the admin key; the admin key is accepted there too.
    metrics_key: str | None = field(default=None, repr=False)
    # /docs and /docs/openapi.json without a key: true or false; None (the default) = public on the
    # embedded development server (a newcomer opens /docs in a browser, which cannot send a key),
    # behind the admin key when DATABASE_URL makes this a deployment.
    public_docs: bool | None = None
    # Development only: let tenants name an http or local (loopback, private) JWKS URL.
    allow_insecure_jwks: bool = False
    # base64 of 32 bytes; seals tenant secrets in the control plane (generated in data_dir when embedded).
    master_key: str | None = field(default=None, repr=False)
    # Former master keys (comma-separated): rows they sealed are resealed with master_key at start-up.
    master_key_previous: str | None = field(default=None, repr=False)
    create_demo: bool | None = None  # None: only on the embedded development default
    key_rotation_grace_seconds: int = 86_400
    key_check_seconds: float = 2.0
    api_key_lifetime_days: int = 365
    max_token_lifetime_seconds: int = 86_400
    jwt_audience: str = "authenticated"
    log_format: str = "auto"
    log_level: str = "info"
    mem: MemSettings = field(default_factory=MemSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)

    @property
    def docs_are_public(self) -> bool:
        return self.public_docs if self.public_docs is not None else not self.database_url

    @property
    def api_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def replace_mem(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, mem=dataclasses.replace(self.mem, **changes))

    def replace_limits(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, limits=dataclasses.replace(self.limits, **changes))

    def replace_queue(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, queue=dataclasses.replace(self.queue, **changes))


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"not a boolean: {value!r}")


def _signals(value: Any) -> tuple[str, ...]:
    """A list, or a comma-separated string, of search signals (semantic, keyword, entity, graph)."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    signals = tuple(dict.fromkeys(str(i).strip() for i in items if str(i).strip()))
    unknown = [s for s in signals if s not in ("semantic", "keyword", "entity", "graph")]
    if unknown or not signals:
        raise ValueError(f"signals are a non-empty subset of semantic, keyword, entity, graph; got {value!r}")
    return signals


def _optional_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _optional_int(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto", "null")):
        return None
    return int(value)


def _optional_bool(value: Any) -> bool | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto", "null")):
        return None
    return _bool(value)


# (config key, Settings attribute, converter, environment variable)
# A "mem." attribute lives on Settings.mem. nubase.mem.* keys take their environment name
# from the key itself: nubase.mem.search.default-top-k -> NUBASE_MEM_SEARCH_DEFAULT_TOP_K.
_KEYS: list[tuple[str, str, Callable[[Any], Any], str | None]] = [
    ("server.host", "host", str, "HOST"),
    ("server.port", "port", int, "PORT"),
    ("server.public-url", "public_url", _optional_str, "PUBLIC_URL"),
    ("server.max-body-bytes", "max_body_bytes", int, "MEM_MAX_BODY_BYTES"),
    ("database.url", "database_url", _optional_str, "DATABASE_URL"),
    ("database.data-dir", "data_dir", Path, "MEM_DATA_DIR"),
    ("database.pool-min-size", "pool_min_size", int, "MEM_POOL_MIN_SIZE"),
    ("database.pool-max-size", "pool_max_size", int, "MEM_POOL_MAX_SIZE"),
    ("database.pool-idle-seconds", "pool_idle_seconds", float, "MEM_POOL_IDLE_SECONDS"),
    ("database.max-pools", "max_pools", int, "MEM_MAX_POOLS"),
    ("database.statement-timeout-ms", "statement_timeout_ms", int, "MEM_STATEMENT_TIMEOUT_MS"),
    ("database.connection-budget", "db_connection_budget", _optional_int, "MEM_DB_CONNECTION_BUDGET"),
    ("database.connection-reserve", "db_connection_reserve", int, "MEM_DB_CONNECTION_RESERVE"),
    ("database.acquire-timeout-seconds", "pool_acquire_timeout_seconds", float, "MEM_POOL_ACQUIRE_TIMEOUT"),
    ("limits.enabled", "limits.enabled", _bool, "MEM_LIMITS_ENABLED"),
    ("limits.user-requests-per-second", "limits.user_requests_per_second", int, None),
    ("limits.user-adds-per-second", "limits.user_adds_per_second", int, None),
    ("limits.service-requests-per-second", "limits.service_requests_per_second", int, None),
    ("limits.service-adds-per-second", "limits.service_adds_per_second", int, None),
    ("limits.max-in-flight", "limits.max_in_flight", int, None),
    ("limits.embedding-queue", "limits.embedding_queue", int, None),
    ("queue.workers", "queue.workers", int, "MEM_QUEUE_WORKERS"),
    ("queue.max-attempts", "queue.max_attempts", int, "MEM_QUEUE_MAX_ATTEMPTS"),
    ("queue.lease-seconds", "queue.lease_seconds", float, "MEM_QUEUE_LEASE_SECONDS"),
    ("queue.retry-base-seconds", "queue.retry_base_seconds", float, "MEM_QUEUE_RETRY_BASE_SECONDS"),
    ("queue.retry-max-seconds", "queue.retry_max_seconds", float, "MEM_QUEUE_RETRY_MAX_SECONDS"),
    ("queue.scan-seconds", "queue.scan_seconds", float, "MEM_QUEUE_SCAN_SECONDS"),
    ("platform.admin-key", "admin_key", _optional_str, "MEM_ADMIN_KEY"),
    ("platform.metrics-key", "metrics_key", _optional_str, "MEM_METRICS_KEY"),
    ("server.public-docs", "public_docs", _optional_bool, "MEM_PUBLIC_DOCS"),
    ("platform.allow-insecure-jwks", "allow_insecure_jwks", _bool, "MEM_ALLOW_INSECURE_JWKS"),
    ("platform.create-demo", "create_demo", _optional_bool, "MEM_CREATE_DEMO"),
    (
        "platform.keys.rotation-grace-seconds",
        "key_rotation_grace_seconds",
        int,
        "MEM_KEY_ROTATION_GRACE_SECONDS",
    ),
    ("platform.keys.check-seconds", "key_check_seconds", float, "MEM_KEY_CHECK_SECONDS"),
    ("platform.keys.api-key-lifetime-days", "api_key_lifetime_days", int, "MEM_API_KEY_LIFETIME_DAYS"),
    (
        "platform.keys.max-token-lifetime-seconds",
        "max_token_lifetime_seconds",
        int,
        "MEM_MAX_TOKEN_LIFETIME_SECONDS",
    ),
    ("platform.keys.jwt-audience", "jwt_audience", str, "MEM_JWT_AUDIENCE"),
    ("log.format", "log_format", str, "LOG_FORMAT"),
    ("log.level", "log_level", str, "LOG_LEVEL"),
    ("nubase.mem.enabled", "mem.enabled", _bool, None),
    ("nubase.mem.chat-provider", "mem.chat_provider", str, None),
    ("nubase.mem.embedding-provider", "mem.embedding_provider", str, None),
    ("nubase.mem.embedding.model", "mem.embedding_model", str, None),
    ("nubase.mem.embedding.dimensions", "mem.embedding_dimensions", int, None),
    ("nubase.mem.embedding.base-url", "mem.embedding_base_url", _optional_str, None),
    ("nubase.mem.embedding.cache-size", "mem.embedding_cache_size", int, None),
    ("nubase.mem.embedding.cache-ttl-seconds", "mem.embedding_cache_ttl_seconds", float, None),
    ("nubase.mem.embedding.batch-size", "mem.embedding_batch_size", int, None),
    ("nubase.mem.embedding.runtime", "mem.embedding_runtime", str, None),
    ("nubase.mem.embedding.query-runtime", "mem.embedding_query_runtime", str, None),
    ("nubase.mem.embedding.threads", "mem.embedding_threads", int, None),
    ("nubase.mem.embedding.workers", "mem.embedding_workers", int, None),
    ("nubase.mem.embedding.batch-window-ms", "mem.embedding_batch_window_ms", float, None),
    ("nubase.mem.embedding.onnx-cache-dir", "mem.embedding_onnx_cache_dir", _optional_str, None),
    ("nubase.mem.chat.model", "mem.chat_model", str, None),
    ("nubase.mem.chat.base-url", "mem.chat_base_url", _optional_str, None),
    ("nubase.mem.chat.json-mode", "mem.chat_json_mode", _bool, None),
    ("nubase.mem.chat.max-tokens", "mem.chat_max_tokens", int, None),
    ("nubase.mem.pipeline.mode", "mem.pipeline_mode", str, None),
    ("nubase.mem.chat.vision", "mem.chat_vision", _optional_bool, None),
    ("nubase.mem.provider.timeout-seconds", "mem.provider_timeout_seconds", float, None),
    ("nubase.mem.provider.max-retries", "mem.provider_max_retries", int, None),
    ("nubase.mem.provider.concurrency", "mem.provider_concurrency", int, None),
    ("nubase.mem.search.default-top-k", "mem.search_default_top_k", int, None),
    ("nubase.mem.search.max-top-k", "mem.search_max_top_k", int, None),
    ("nubase.mem.search.entity-boost-enabled", "mem.search_entity_boost_enabled", _bool, None),
    ("nubase.mem.search.signals", "mem.search_signals", _signals, None),
    ("nubase.mem.search.fts-config", "mem.search_fts_config", str, None),
    ("nubase.mem.search.server-timing", "mem.server_timing", _bool, "MEM_SERVER_TIMING"),
    ("nubase.mem.memory.short-term-ttl-hours", "mem.short_term_ttl_hours", float, None),
    ("nubase.mem.session.window-size", "mem.session_window_size", int, None),
    ("nubase.mem.list.max-page-size", "mem.list_max_page_size", int, None),
]


def env_name(key: str, explicit: str | None) -> str:
    return explicit or key.upper().replace(".", "_").replace("-", "_")


def _lookup(tree: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise SettingsError(f"{path} must hold a mapping")
    return loaded


def _secret(environ: Mapping[str, str], *names: str) -> str | None:
    """A provider key from the environment, or from the file named by <NAME>_FILE."""
    for name in names:
        if environ.get(name):
            return environ[name]
        file_path = environ.get(f"{name}_FILE")
        if file_path:
            try:
                return Path(file_path).read_text().strip() or None
            except OSError as exc:
                # Name the variable, never the file's content.
                raise SettingsError(f"{name}_FILE names a file that cannot be read: {exc.strerror}") from exc
    return None


def load_settings(environ: Mapping[str, str] | None = None, config_dir: Path | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    config_dir = config_dir or CONFIG_DIR
    env = environ.get("MEMORY_ENV", "default")
    tree = _read_yaml(config_dir / "default.yaml")
    if env != "default":
        tree = _merge(tree, _read_yaml(config_dir / f"{env}.yaml"))

    top: dict[str, Any] = {"env": env}
    mem: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    queue: dict[str, Any] = {}
    # "mem.x" lives on Settings.mem, "limits.x" on Settings.limits, "queue.x" on Settings.queue.
    groups = {"mem": mem, "limits": limits, "queue": queue}
    for key, attr, convert, explicit_env in _KEYS:
        found, value = _lookup(tree, key)
        name = env_name(key, explicit_env)
        if name in environ:
            found, value = True, environ[name]
        if not found:
            continue
        try:
            converted = convert(value) if value is not None or convert is _optional_str else None
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"setting {key} ({name}) has a bad value: {exc}") from exc
        if converted is None and convert is not _optional_str:
            continue
        group, _, name_in_group = attr.rpartition(".")
        groups.get(group, top)[name_in_group if group in groups else attr] = converted

    mem["embedding_api_key"] = _secret(environ, "NUBASE_MEM_EMBEDDING_API_KEY", "OPENAI_API_KEY")
    mem["chat_api_key"] = _secret(
        environ,
        "NUBASE_MEM_CHAT_API_KEY",
        "ANTHROPIC_API_KEY" if mem.get("chat_provider") == "anthropic" else "OPENAI_API_KEY",
    )
    top["admin_key"] = top.get("admin_key") or _secret(environ, "MEM_ADMIN_KEY")
    top["metrics_key"] = top.get("metrics_key") or _secret(environ, "MEM_METRICS_KEY")
    top["master_key"] = _secret(environ, "MEM_MASTER_KEY")
    top["master_key_previous"] = _secret(environ, "MEM_MASTER_KEY_PREVIOUS")
    data_dir = top.get("data_dir")
    if isinstance(data_dir, Path) and not data_dir.is_absolute():
        top["data_dir"] = PROJECT_ROOT / data_dir
    settings = Settings(
        **top, mem=MemSettings(**mem), limits=LimitSettings(**limits), queue=QueueSettings(**queue)
    )
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    _validate_mem(settings.mem)
    if not 1 <= settings.port <= 65535:
        raise SettingsError(f"server.port (PORT) must be between 1 and 65535, not {settings.port}")
    if settings.log_format not in ("json", "console", "auto"):
        raise SettingsError("log.format must be json, console or auto")
    _validate_limits(settings)
    _validate_queue(settings.queue)


def _validate_queue(queue: QueueSettings) -> None:
    if queue.workers < 0:
        raise SettingsError("MEM_QUEUE_WORKERS must be 0 or more")
    if queue.max_attempts < 1:
        raise SettingsError("MEM_QUEUE_MAX_ATTEMPTS must be at least 1")
    if queue.lease_seconds < 1:
        raise SettingsError("MEM_QUEUE_LEASE_SECONDS must be at least 1")
    if not 0 < queue.retry_base_seconds <= queue.retry_max_seconds:
        raise SettingsError(
            "MEM_QUEUE_RETRY_BASE_SECONDS must be positive and at most MEM_QUEUE_RETRY_MAX_SECONDS"
        )
    if queue.scan_seconds <= 0:
        raise SettingsError("MEM_QUEUE_SCAN_SECONDS must be positive")


def _validate_limits(settings: Settings) -> None:
    for name, value in dataclasses.asdict(settings.limits).items():
        if name != "enabled" and value < 1:
            raise SettingsError(f"limits.{name.replace('_', '-')} must be at least 1, not {value}")
    if settings.db_connection_budget is not None and settings.db_connection_budget < 2:
        raise SettingsError("database.connection-budget must be at least 2")
    if settings.pool_acquire_timeout_seconds <= 0:
        raise SettingsError("database.acquire-timeout-seconds must be positive")
    _validate_keys(settings)


def _validate_keys(settings: Settings) -> None:
    if not 0 <= settings.key_rotation_grace_seconds <= 30 * 86_400:
        raise SettingsError("MEM_KEY_ROTATION_GRACE_SECONDS must be between 0 and 2592000 (30 days)")
    if not 0 < settings.key_check_seconds <= 60:
        raise SettingsError("MEM_KEY_CHECK_SECONDS must be more than 0 and at most 60")
    if not 1 <= settings.api_key_lifetime_days <= 3650:
        raise SettingsError("MEM_API_KEY_LIFETIME_DAYS must be between 1 and 3650")
    if not 60 <= settings.max_token_lifetime_seconds <= 30 * 86_400:
        raise SettingsError("MEM_MAX_TOKEN_LIFETIME_SECONDS must be between 60 and 2592000")
    if not settings.jwt_audience.strip():
        raise SettingsError("MEM_JWT_AUDIENCE must not be empty")


LOCAL_RUNTIMES = ("onnx-q8", "onnx-int8", "onnx", "torch", "torch-int8")


def query_runtime(mem: MemSettings) -> str:
    """The local runtime search queries are embedded with (nubase.mem.embedding.query-runtime)."""
    if mem.embedding_query_runtime == "same":
        return mem.embedding_runtime
    return mem.embedding_query_runtime


def _validate_local_embedder(mem: MemSettings) -> None:
    if mem.embedding_runtime not in LOCAL_RUNTIMES:
        raise SettingsError(
            f"nubase.mem.embedding.runtime must be one of {LOCAL_RUNTIMES}, not {mem.embedding_runtime!r}"
        )
    if mem.embedding_query_runtime not in ("same", *LOCAL_RUNTIMES):
        raise SettingsError(
            f"nubase.mem.embedding.query-runtime must be same or one of {LOCAL_RUNTIMES}, "
            f"not {mem.embedding_query_runtime!r}"
        )
    if not 1 <= mem.embedding_threads <= 64 or not 1 <= mem.embedding_workers <= 16:
        raise SettingsError(
            "nubase.mem.embedding.threads must be between 1 and 64, nubase.mem.embedding.workers 1 and 16"
        )
    if not 0 <= mem.embedding_batch_window_ms <= 50:
        raise SettingsError("nubase.mem.embedding.batch-window-ms must be between 0 and 50")


def _validate_mem(mem: MemSettings) -> None:
    if mem.chat_provider not in CHAT_PROVIDERS:
        raise SettingsError(
            f"nubase.mem.chat-provider must be one of {CHAT_PROVIDERS}, not {mem.chat_provider!r}"
        )
    if mem.embedding_provider not in EMBEDDING_PROVIDERS:
        raise SettingsError(
            f"nubase.mem.embedding-provider must be one of {EMBEDDING_PROVIDERS}, "
            f"not {mem.embedding_provider!r}"
        )
    if not 1 <= mem.embedding_dimensions <= 2000:
        raise SettingsError("nubase.mem.embedding.dimensions must be between 1 and 2000 (HNSW's limit)")
    if mem.embedding_provider == "local" and mem.embedding_dimensions != 384:
        raise SettingsError(
            "nubase.mem.embedding.dimensions must be 384 with the local embedder (all-MiniLM-L6-v2)"
        )
    _validate_local_embedder(mem)
    if mem.pipeline_mode not in ("single", "two-call"):
        raise SettingsError(f"nubase.mem.pipeline.mode must be single or two-call, not {mem.pipeline_mode!r}")
    if mem.chat_max_tokens < 1:
        raise SettingsError("nubase.mem.chat.max-tokens must be at least 1")
    if not re.match(FTS_CONFIG_PATTERN, mem.search_fts_config):
        raise SettingsError(f"nubase.mem.search.fts-config {mem.search_fts_config!r} is not a valid name")
    if not 1 <= mem.search_default_top_k <= mem.search_max_top_k:
        raise SettingsError("nubase.mem.search.default-top-k must be between 1 and max-top-k")
