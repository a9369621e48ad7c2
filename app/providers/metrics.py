"""Provider metrics, shared by every provider."""

from prometheus_client import Counter, Gauge, Histogram

PROVIDER_LATENCY = Histogram(
    "memory_provider_latency_seconds",
    "Latency of calls to model providers",
    ["provider", "operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PROVIDER_ERRORS = Counter(
    "memory_provider_errors_total", "Failed calls to model providers", ["provider", "operation", "kind"]
)
EMBED_CACHE = Counter("memory_embedding_cache_total", "Query-embedding cache lookups", ["result"])
EMBED_QUEUE_DEPTH = Gauge("memory_embedding_queue_depth", "Texts waiting for the local embedding model")
EMBED_QUEUE_REFUSED = Counter(
    "memory_embedding_queue_refused_total", "Embedding calls refused because the tenant's queue was full"
)
