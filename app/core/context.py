"""What the memory services need besides the request: providers, settings, tenant facts, caches."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from app.core.config import EffectiveConfig
from app.core.repo import read_config
from app.core.retrieval.caches import RetrievalCaches
from app.db.session import TenantSession
from app.errors import ProviderError
from app.providers.chat import ChatProvider
from app.providers.embeddings import Embedder, QueryEmbeddingCache
from app.settings import MemSettings

V = TypeVar("V")
W = TypeVar("W")


@dataclass
class MemoryDeps:
    """Built once per request by the HTTP layer (or a job), from the process-wide runtime."""

    settings: MemSettings
    embedder: Embedder
    query_cache: QueryEmbeddingCache
    caches: RetrievalCaches
    tenant_ref: str
    tenant_dims: int
    fts_config: str = "simple"
    chat: ChatProvider | None = None
    # Writes a reset of this tenant to the platform's audit trail: (actor, rows removed per table).
    # A callback, so the memory features need not know the control plane.
    record_reset: Callable[[str, dict[str, int]], Awaitable[None]] | None = None
    # Wakes this process's queue workers for this tenant once an enqueued add has committed.
    wake_workers: Callable[[], None] | None = None
    _config: EffectiveConfig | None = field(default=None, init=False, repr=False)

    @property
    def chat_available(self) -> bool:
        return self.chat is not None

    def check_dimensions(self) -> None:
        if self.embedder.dimensions != self.tenant_dims:
            raise ProviderError(
                f"The embedding provider gives {self.embedder.dimensions} dimensions but this tenant "
                f"stores {self.tenant_dims}.",
                code="embedding_dimension_mismatch",
            )

    async def config(self, db: TenantSession) -> EffectiveConfig:
        """The tenant's effective settings, read once per request inside its transaction."""
        if self._config is None:
            row = await read_config(await db.connection())
            self._config = EffectiveConfig.resolve(self.settings, dict(row["settings"]) if row else {})
        return self._config

    async def embed_while(self, embedding: Awaitable[V], work: Callable[[], Awaitable[W]]) -> tuple[V, W]:
        """`embedding`'s vectors and `work`'s result, the two overlapped when that is safe.

        `work` is database work that needs no vector (opening the transaction, reading the
        config...). When the local model takes this tenant's texts within one short pass (it is
        idle, or shared and this tenant has nothing waiting: LocalEmbedder.starts_soon), they
        are done within a pass or two (~5 ms a sentence), so `work` runs meanwhile. Otherwise (a
        remote provider, or this tenant's own queue in front of the model) the texts are
        embedded first, so a slow or failing provider never holds a pooled connection. If `work`
        fails, the embedding is cancelled.
        """
        starts_soon = getattr(self.embedder, "starts_soon", None)
        overlap = starts_soon is not None and starts_soon(self.tenant_ref) is True
        embedded = asyncio.ensure_future(embedding)
        if not overlap:
            return await embedded, await work()
        try:
            done = await work()
        except BaseException:
            embedded.cancel()
            raise
        return await embedded, done

    def forget_config(self) -> None:
        """After PUT /config, so the rest of the request sees the new values."""
        self._config = None
