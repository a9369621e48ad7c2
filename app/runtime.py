"""Everything a running service holds: built by create_app's lifespan, torn down with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.auth.jwks import JwksKeys
from app.db.embedded import EmbeddedPostgres
from app.db.pools import TenantPools
from app.memories.deps import MemoryDeps
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
    chat: Any = None  # ChatProvider | None

    def memory_deps(self, tenant_dims: int, fts_config: str) -> MemoryDeps:
        return MemoryDeps(
            settings=self.settings.mem,
            embedder=self.embedder,
            query_cache=self.query_cache,
            tenant_dims=tenant_dims,
            fts_config=fts_config,
            chat=self.chat,
        )
