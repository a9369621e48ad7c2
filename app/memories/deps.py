"""What the memory services need besides the request: providers, settings, tenant facts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.errors import ProviderError
from app.providers.embeddings import Embedder, QueryEmbeddingCache
from app.settings import MemSettings


@dataclass(frozen=True)
class MemoryDeps:
    settings: MemSettings
    embedder: Embedder
    query_cache: QueryEmbeddingCache
    tenant_dims: int
    fts_config: str = "simple"
    chat: Any = None  # a ChatProvider, or None when chat-provider is "none"

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
