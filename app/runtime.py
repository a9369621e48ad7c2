"""Everything a running service holds: built by create_app's lifespan, torn down with it."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from app.auth.jwks import JwksKeys
from app.auth.tokens import VerifiedKeys
from app.core.context import MemoryDeps
from app.core.jobs.wakeups import JobWakeups
from app.core.limits import TenantLimiter
from app.core.retrieval.caches import RetrievalCaches
from app.db.embedded import EmbeddedPostgres
from app.db.pools import TenantPools
from app.providers.chat import ChatProvider
from app.providers.embeddings import Embedder, QueryEmbeddingCache
from app.settings import Settings
from app.tenancy.service import Platform


@dataclass
class Runtime:
    settings: Settings
    platform: Platform
    pools: TenantPools
    embedder: Embedder
    query_cache: QueryEmbeddingCache
    jwks: JwksKeys
    embedded: EmbeddedPostgres | None = None
    chat: ChatProvider | None = None
    retrieval_caches: RetrievalCaches = field(default_factory=RetrievalCaches)
    job_wakeups: JobWakeups = field(default_factory=JobWakeups)
    verified_keys: VerifiedKeys = field(default_factory=VerifiedKeys)
    limits: TenantLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.limits = TenantLimiter(self.settings.limits)

    def memory_deps(self, tenant_ref: str, tenant_dims: int, fts_config: str) -> MemoryDeps:
        return MemoryDeps(
            settings=self.settings.mem,
            embedder=self.embedder,
            query_cache=self.query_cache,
            caches=self.retrieval_caches,
            tenant_ref=tenant_ref,
            tenant_dims=tenant_dims,
            fts_config=fts_config,
            chat=self.chat,
            record_reset=functools.partial(self.platform.record_reset, tenant_ref),
            wake_workers=functools.partial(self.job_wakeups.notify, tenant_ref),
        )
