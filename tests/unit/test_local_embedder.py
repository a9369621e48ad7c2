"""The local model's runtimes (issue 13): the same vectors from every runtime, the ONNX graph
exported from the shipped weights, settings checked, and the event loop never blocked."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from app.providers.embeddings import LocalEmbedder, QueryEmbeddingCache, Vector, build_embedder
from app.providers.local_model import OnnxEncoder, ensure_exported, load_encoder, onnx_file
from app.settings import MemSettings, SettingsError, load_settings, query_runtime

SENTENCES = [
    "I love eating sushi at a little place in Lisbon.",
    "When did Caroline go to the LGBTQ support group?",
    "My sister Maria works as a nurse in Porto and has a cat called Biscuit.",
    "ok",
]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """sentence-transformers on torch, fp32: what the service computed before issue 13."""
    return load_encoder("torch", threads=1, batch_size=64, cache_dir=None).encode(SENTENCES)


@pytest.mark.parametrize(
    ("runtime", "floor"), [("onnx", 0.9999), ("onnx-q8", 0.999), ("onnx-int8", 0.95), ("torch-int8", 0.75)]
)
def test_every_runtime_gives_the_same_normalised_vectors(
    reference: np.ndarray, runtime: str, floor: float
) -> None:
    vectors = load_encoder(runtime, threads=1, batch_size=64, cache_dir=None).encode(SENTENCES)
    assert vectors.shape == (len(SENTENCES), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cosine = np.sum(vectors * reference, axis=1)
    assert cosine.min() >= floor, cosine


@pytest.mark.parametrize("runtime", ["onnx", "onnx-q8"])
def test_padding_in_a_batch_changes_no_vector(runtime: str) -> None:
    """A short text batched with a long one is padded; the mask must keep the pads out of the mean.
    On onnx-q8 too: its activations are quantised per block of one token's row, never over the
    batch, so a text's vector does not depend on what it was batched with."""
    encoder = load_encoder(runtime, threads=1, batch_size=64, cache_dir=None)
    alone = np.stack([encoder.encode([s])[0] for s in SENTENCES])
    together = encoder.encode(SENTENCES)
    assert np.allclose(alone, together, atol=1e-5)


def test_the_graph_is_exported_once_into_the_cache_dir(tmp_path: Path) -> None:
    path = ensure_exported(tmp_path, "onnx-int8")
    assert path == onnx_file(tmp_path, "onnx-int8") and path.stat().st_size > 10_000_000
    # every graph comes from one export
    assert onnx_file(tmp_path, "onnx").exists() and onnx_file(tmp_path, "onnx-q8").exists()
    mtime = path.stat().st_mtime_ns
    assert ensure_exported(tmp_path, "onnx-int8") == path
    assert path.stat().st_mtime_ns == mtime  # not exported again
    assert OnnxEncoder(path, threads=1).encode(["hello"]).shape == (1, 384)


def test_runtime_settings_are_read_and_checked() -> None:
    settings = load_settings(
        {
            "NUBASE_MEM_EMBEDDING_RUNTIME": "torch",
            "NUBASE_MEM_EMBEDDING_THREADS": "2",
            "NUBASE_MEM_EMBEDDING_WORKERS": "3",
            "NUBASE_MEM_EMBEDDING_BATCH_WINDOW_MS": "1.5",
        }
    )
    mem = settings.mem
    assert (mem.embedding_runtime, mem.embedding_threads, mem.embedding_workers) == ("torch", 2, 3)
    assert mem.embedding_batch_window_ms == 1.5
    assert load_settings({}).mem.embedding_runtime == "onnx-q8"  # the default
    for env in (
        {"NUBASE_MEM_EMBEDDING_RUNTIME": "tensorrt"},
        {"NUBASE_MEM_EMBEDDING_THREADS": "0"},
        {"NUBASE_MEM_EMBEDDING_WORKERS": "17"},
        {"NUBASE_MEM_EMBEDDING_BATCH_WINDOW_MS": "-1"},
    ):
        with pytest.raises(SettingsError):
            load_settings(env)


def test_search_queries_have_their_own_runtime_setting() -> None:
    assert query_runtime(load_settings({}).mem) == "onnx-q8", "by default queries run as memories do"
    assert query_runtime(load_settings({"NUBASE_MEM_EMBEDDING_RUNTIME": "torch"}).mem) == "torch"
    split = load_settings({"NUBASE_MEM_EMBEDDING_QUERY_RUNTIME": "onnx-int8"}).mem
    assert (split.embedding_runtime, query_runtime(split)) == ("onnx-q8", "onnx-int8")
    with pytest.raises(SettingsError, match="query-runtime"):
        load_settings({"NUBASE_MEM_EMBEDDING_QUERY_RUNTIME": "fp16"})
    embedder = build_embedder(split)
    assert isinstance(embedder, LocalEmbedder)
    assert (embedder.runtime, embedder.query_runtime) == ("onnx-q8", "onnx-int8")


async def test_search_queries_run_on_the_query_runtime_and_everything_else_on_the_runtime() -> None:
    fp32 = load_encoder("onnx", threads=1, batch_size=64, cache_dir=None).encode(SENTENCES)
    int8_model = load_encoder("onnx-int8", threads=1, batch_size=64, cache_dir=None)
    int8 = np.concatenate([int8_model.encode([s]) for s in SENTENCES])
    assert not np.allclose(fp32, int8, atol=1e-3), "the two runtimes give different vectors"
    # int8 quantises a pass's activations over its batch: batched, a text's vector moves.
    assert not np.allclose(int8_model.encode(SENTENCES), int8, atol=1e-5)
    embedder = LocalEmbedder(runtime="onnx", query_runtime="onnx-int8")
    try:
        await embedder.warm_up()
        # Memories and queries queued together share one batch; each text gets its own kind's
        # vector, and a query the vector it has alone, whatever else was queued with it.
        memories, queries = await asyncio.gather(
            embedder.embed(SENTENCES, tenant="t"), embedder.embed(SENTENCES, tenant="t", query=True)
        )
        assert np.allclose(np.stack(memories), fp32, atol=1e-5)
        assert np.allclose(np.stack(queries), int8, atol=1e-5)
        # The same model: a query's vector stays close to the memory vector of the same text.
        assert np.sum(np.stack(queries) * np.stack(memories), axis=1).min() > 0.95
        mixed = await asyncio.gather(
            *(embedder.embed([s], tenant="t", query=i % 2 == 0) for i, s in enumerate(SENTENCES))
        )
        for i, (vector,) in enumerate(mixed):
            assert np.allclose(vector, (int8 if i % 2 == 0 else fp32)[i], atol=1e-5)
    finally:
        await embedder.close()


async def test_the_query_cache_asks_for_query_vectors() -> None:
    class Recording:
        name, model, dimensions = "rec", "m", 384
        calls: list[tuple[list[str], bool]] = []

        async def embed(
            self, texts: list[str], tenant: str | None = None, *, query: bool = False
        ) -> list[Vector]:
            self.calls.append((list(texts), query))
            return [np.zeros(384, dtype=np.float32) for _ in texts]

        async def close(self) -> None:
            return None

    recording = Recording()
    cache = QueryEmbeddingCache(recording, size=10, ttl_seconds=60)
    await cache.embed_query("where do I live?", partition="t")
    assert recording.calls == [(["where do I live?"], True)]


async def test_the_model_never_blocks_the_event_loop() -> None:
    embedder = build_embedder(MemSettings(embedding_runtime="onnx"))
    assert isinstance(embedder, LocalEmbedder)
    try:
        await embedder.warm_up()
        ticks: list[float] = []

        async def ticker() -> None:
            while True:
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        texts = [f"{s} number {i}" for i in range(40) for s in SENTENCES]  # a few hundred ms of model
        started = time.perf_counter()
        vectors = await embedder.embed(texts)
        elapsed = time.perf_counter() - started
        task.cancel()
        assert len(vectors) == len(texts)
        gaps = np.diff(ticks)
        # The loop ticked all along: no gap near the model's whole time.
        assert len(ticks) > 5 and gaps.max() < max(0.1, elapsed / 2), (gaps.max(), elapsed)
    finally:
        await embedder.close()


class _Counting(LocalEmbedder):
    def __init__(self, *, batch_window_ms: float) -> None:
        super().__init__(batch_window_ms=batch_window_ms)
        self.batches: list[int] = []

    def _encode(self, texts: list[str]) -> np.ndarray:
        self.batches.append(len(texts))
        return np.ones((len(texts), 384), dtype=np.float32)


async def _two_texts_10ms_apart(model: LocalEmbedder) -> None:
    first = asyncio.create_task(model.embed(["first"]))
    await asyncio.sleep(0.01)
    await asyncio.gather(first, model.embed(["second"]))


async def test_under_load_a_batch_window_gathers_the_next_texts_but_a_lone_caller_never_waits() -> None:
    model = _Counting(batch_window_ms=0)
    try:
        await asyncio.gather(*(model.embed([f"t{i}"]) for i in range(16)))
        await _two_texts_10ms_apart(model)
        assert model.batches == [16, 1, 1]  # texts queued together share a pass; no window
    finally:
        await model.close()
    model = _Counting(batch_window_ms=50)
    try:
        await asyncio.gather(*(model.embed([f"t{i}"]) for i in range(16)))
        # After a batch of several (load), the next text waits for the one 10 ms behind it.
        await _two_texts_10ms_apart(model)
        assert model.batches == [16, 2]
        await model.embed(["once more"])  # waits once: the last pass was shared
        started = time.perf_counter()
        await model.embed(["alone"])  # the last pass held one text: no wait
        assert time.perf_counter() - started < 0.04
        assert model.batches == [16, 2, 1, 1]
    finally:
        await model.close()
