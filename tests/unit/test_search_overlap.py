"""The search path opens its transaction while the local model embeds the query, when the model
takes the query within one short pass.

app.search.service._embed_and_configure: with the local model idle, or shared and this tenant
with nothing waiting (LocalEmbedder.starts_soon), the round trips that need no vector (acquire,
BEGIN, claims, config, then the lexemes and owner size retrieval reads) run during the forward
pass; behind a long pass or this tenant's own queue, or with a remote provider, the query is
embedded before any connection is held.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import numpy as np
import pytest

import app.search.service as search_service
from app.auth.scope import MemoryAuthScope, Owner
from app.core.context import MemoryDeps
from app.db.session import TenantSession
from app.providers.embeddings import LocalEmbedder, QueryEmbeddingCache
from app.search.service import _embed_and_configure

FORWARD_PASS_SECONDS = 0.05


class _SlowModel(LocalEmbedder):
    def _encode(self, texts: list[str]) -> np.ndarray:
        time.sleep(FORWARD_PASS_SECONDS)
        return np.ones((len(texts), 384), dtype=np.float32)


class _Deps:
    """The parts of MemoryDeps the function uses; records when the transaction was opened."""

    embed_while = MemoryDeps.embed_while

    def __init__(self, embedder: LocalEmbedder, *, config_error: Exception | None = None) -> None:
        self.embedder = embedder
        self.query_cache = QueryEmbeddingCache(embedder, size=0, ttl_seconds=60)
        self.tenant_ref = "t1"
        self.opened_at: float | None = None
        self._config_error = config_error

    def check_dimensions(self) -> None:
        return None

    async def config(self, db: Any) -> str:
        self.opened_at = time.perf_counter()
        await asyncio.sleep(0.001)  # the round trips
        if self._config_error is not None:
            raise self._config_error
        return "config"


class _Scope:
    is_service = True


class _Db:
    async def connection(self) -> str:
        return "connection"


@pytest.fixture(autouse=True)
def prepared(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Stands in for retrieval's prepare(): records when it ran, and on what."""
    times: list[float] = []

    async def prepare(conn: Any, deps: Any, owner: Owner, text: str) -> None:
        assert (conn, owner, text) == ("connection", Owner(user_id="u1"), "a query")
        times.append(time.perf_counter())

    monkeypatch.setattr(search_service, "prepare", prepare)
    return times


async def _run(deps: _Deps) -> tuple[Any, Any, float]:
    started = time.perf_counter()
    vector, config = await _embed_and_configure(
        cast(TenantSession, _Db()),
        cast(MemoryAuthScope, _Scope()),
        Owner(user_id="u1"),
        "a query",
        cast(MemoryDeps, deps),
    )
    return vector, config, started


async def test_an_idle_local_model_overlaps_the_transaction_with_the_forward_pass(
    prepared: list[float],
) -> None:
    model = _SlowModel()
    try:
        deps = _Deps(model)
        assert model.idle
        vector, config, started = await _run(deps)
        assert config == "config" and vector.shape == (384,)
        assert deps.opened_at is not None
        assert deps.opened_at - started < FORWARD_PASS_SECONDS / 2, "opened during the forward pass"
        assert len(prepared) == 1 and prepared[0] - started < FORWARD_PASS_SECONDS / 2, "prepared meanwhile"
    finally:
        await model.close()


async def test_behind_a_long_pass_the_model_embeds_first_so_no_connection_waits() -> None:
    model = _SlowModel()
    try:
        # One tenant's batch of ten texts in one pass: the model is not shared.
        busy = asyncio.create_task(model.embed([f"text {i}" for i in range(10)], tenant="other"))
        await asyncio.sleep(0.005)
        assert not model.idle and not model.starts_soon("t1")
        deps = _Deps(model)
        _, config, started = await _run(deps)
        await busy
        assert config == "config"
        assert deps.opened_at is not None
        assert deps.opened_at - started >= FORWARD_PASS_SECONDS, "opened only after the vector"
        assert model.idle
    finally:
        await model.close()


async def test_behind_its_own_waiting_texts_a_tenant_embeds_first() -> None:
    model = _SlowModel()
    try:
        others = asyncio.create_task(model.embed(["another tenant's text"], tenant="other"))
        await asyncio.sleep(0.005)
        mine = asyncio.create_task(model.embed(["my earlier text"], tenant="t1"))
        await asyncio.sleep(0.001)
        assert not model.starts_soon("t1") and model.starts_soon("third")
        deps = _Deps(model)
        _, config, started = await _run(deps)
        await asyncio.gather(others, mine)
        assert config == "config"
        assert deps.opened_at is not None
        assert deps.opened_at - started >= FORWARD_PASS_SECONDS, "opened only after the vector"
    finally:
        await model.close()


async def test_a_shared_model_overlaps_a_quiet_tenants_transaction_with_the_wait(
    prepared: list[float],
) -> None:
    model = _SlowModel()
    try:
        # Another tenant's one-text pass is running: t1's query is next, one short pass away.
        busy = asyncio.create_task(model.embed(["another tenant's text"], tenant="other"))
        await asyncio.sleep(0.005)
        assert not model.idle and model.starts_soon("t1")
        deps = _Deps(model)
        vector, config, started = await _run(deps)
        await busy
        assert config == "config" and vector.shape == (384,)
        assert deps.opened_at is not None
        assert deps.opened_at - started < FORWARD_PASS_SECONDS / 2, "opened while waiting"
        assert len(prepared) == 1 and prepared[0] - started < FORWARD_PASS_SECONDS / 2
        # Its query was the pass right after the running one, not behind anything else.
        assert time.perf_counter() - started < 2.5 * FORWARD_PASS_SECONDS
    finally:
        await model.close()


async def test_a_failing_transaction_does_not_leave_the_embedding_running(prepared: list[float]) -> None:
    model = _SlowModel()
    try:
        deps = _Deps(model, config_error=RuntimeError("database down"))
        with pytest.raises(RuntimeError, match="database down"):
            await _run(deps)
        await asyncio.sleep(FORWARD_PASS_SECONDS * 2)
        assert model.idle
        assert not prepared
    finally:
        await model.close()
