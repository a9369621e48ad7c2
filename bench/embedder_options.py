"""`python -m bench.embedder_options`: the local model's runtimes side by side, on one thread.

For each runtime of app/providers/local_model.py (torch fp32, torch int8, ONNX fp32, ONNX 8 bits
per block, ONNX int8):
latency of one sentence (p50/p95, the runtimes interleaved sentence by sentence so machine noise
hits them alike), throughput of batches of 32, agreement with torch fp32 (cosine of the vectors),
and LoCoMo dense recall@10 by exact search over each conversation's turns (the service's fused
recall is `python -m bench --only locomo` with NUBASE_MEM_EMBEDDING_RUNTIME set).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.providers.embeddings import LocalEmbedder
from app.providers.local_model import Encoder, load_encoder
from app.settings import LOCAL_RUNTIMES as RUNTIMES
from bench import locomo
from bench.progress import log, percentiles
from bench.service import ROOT


def _dense_recall(
    encoder: Encoder, data: list[dict[str, Any]], query_encoder: Encoder | None = None
) -> float:
    """recall@10 of exact search; the questions on `query_encoder` when given (the service's
    query runtime), the turns on `encoder`."""
    query_encoder = query_encoder or encoder
    values: list[float] = []
    for sample in data:
        adds = locomo.turns(sample)
        texts = [a["messages"][0]["content"] for a in adds]
        dias = [a["metadata"]["dia_id"] for a in adds]
        items = locomo.qa_items(sample)
        docs = np.concatenate([encoder.encode(texts[i : i + 64]) for i in range(0, len(texts), 64)])
        queries = np.concatenate(
            [
                query_encoder.encode([q["question"] for q in items[i : i + 64]])
                for i in range(0, len(items), 64)
            ]
        )
        top = np.argsort(-(queries @ docs.T), axis=1)[:, :10]
        for item, row in zip(items, top, strict=True):
            found = {dias[j] for j in row}
            values.append(len(set(item["evidence"]) & found) / len(item["evidence"]))
    return round(100 * sum(values) / len(values), 2)


async def _closed_loop(embedder: LocalEmbedder, texts: list[str], concurrency: int) -> list[float]:
    """`concurrency` callers, each sending one text at a time: the latency of each call in ms."""
    latencies: list[float] = []
    queue = list(texts)

    async def caller() -> None:
        while queue:
            text = queue.pop()
            t = time.perf_counter()
            await embedder.embed([text])
            latencies.append((time.perf_counter() - t) * 1000)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return latencies


async def batching(runtime: str, texts: list[str], rounds: int = 3) -> dict[str, Any]:
    """Micro-batching of concurrent single-text calls: batch windows of 0, 1 and 2 ms, at
    concurrency 1 and 16, interleaved round by round (the same noise for each window)."""
    windows = (0.0, 1.0, 2.0)
    embedders = {w: LocalEmbedder(runtime=runtime, batch_window_ms=w) for w in windows}
    out: dict[str, Any] = {}
    try:
        for e in embedders.values():
            await e.warm_up()
        lat: dict[tuple[float, int], list[float]] = {(w, c): [] for w in windows for c in (1, 16)}
        wall: dict[tuple[float, int], float] = {k: 0.0 for k in lat}
        for _ in range(rounds):
            for (w, c), values in lat.items():
                t = time.perf_counter()
                values += await _closed_loop(embedders[w], texts, c)
                wall[(w, c)] += time.perf_counter() - t
        for (w, c), values in lat.items():
            out[f"window {w:g} ms, concurrency {c}"] = {
                "ms": percentiles(values),
                "texts_per_s": round(len(values) / wall[(w, c)], 1),
            }
    finally:
        for e in embedders.values():
            await e.close()
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = locomo.load(args.locomo, args.samples)
    sentences = [q["question"] for s in data for q in locomo.qa_items(s)][: args.sentences]
    encoders: dict[str, Encoder] = {}
    for runtime in args.runtimes:
        started = time.perf_counter()
        encoders[runtime] = load_encoder(runtime, threads=1, batch_size=64, cache_dir=None)
        encoders[runtime].encode(sentences[:8])  # warm
        log(f"{runtime}: loaded in {time.perf_counter() - started:.1f}s")
    single: dict[str, list[float]] = {r: [] for r in encoders}
    for i, text in enumerate(sentences):  # interleaved: the same noise for every runtime
        for runtime in list(encoders) if i % 2 else list(reversed(encoders)):
            t = time.perf_counter()
            encoders[runtime].encode([text])
            single[runtime].append((time.perf_counter() - t) * 1000)
    batch_rate: dict[str, list[float]] = {r: [] for r in encoders}
    batches = [sentences[i : i + 32] for i in range(0, min(len(sentences), 32 * args.batches), 32)]
    for batch in batches:
        for runtime, encoder in encoders.items():
            t = time.perf_counter()
            encoder.encode(batch)
            batch_rate[runtime].append(len(batch) / (time.perf_counter() - t))
    reference = encoders[args.runtimes[0]].encode(sentences[:500])
    out: dict[str, Any] = {}
    for runtime, encoder in encoders.items():
        agree = np.sum(reference * encoder.encode(sentences[:500]), axis=1)
        log(f"{runtime}: LoCoMo dense recall (exact search over {len(data)} conversations)")
        out[runtime] = {
            "single_ms": percentiles(single[runtime]),
            "batch32_per_s": round(float(np.median(batch_rate[runtime])), 1),
            "cosine_vs_first": {"min": round(float(agree.min()), 4), "mean": round(float(agree.mean()), 5)},
            "locomo_dense_recall@10": _dense_recall(encoder, data) if args.recall else None,
        }
    if args.recall and {"onnx", "onnx-int8"} <= set(encoders):
        # NUBASE_MEM_EMBEDDING_QUERY_RUNTIME=onnx-int8: memories on onnx (fp32), queries on int8.
        log("onnx memories, onnx-int8 queries: LoCoMo dense recall")
        out["onnx-int8 queries only"] = {
            "locomo_dense_recall@10": _dense_recall(encoders["onnx"], data, encoders["onnx-int8"])
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.embedder_options", description=__doc__)
    p.add_argument("--runtimes", default=",".join(["torch", "torch-int8", "onnx", "onnx-q8", "onnx-int8"]))
    p.add_argument("--sentences", type=int, default=400, help="single-sentence requests per runtime")
    p.add_argument("--batches", type=int, default=10, help="batches of 32 per runtime")
    p.add_argument("--samples", type=int, default=None, help="LoCoMo conversations (default all)")
    p.add_argument("--no-recall", dest="recall", action="store_false")
    p.add_argument("--batching-runtime", default="onnx-q8", help="the runtime of the micro-batching part")
    p.add_argument("--locomo", type=Path, default=ROOT.parent / "shared" / "bench" / "locomo-dev.json")
    args = p.parse_args(argv)
    args.runtimes = [r for r in args.runtimes.split(",") if r]
    unknown = set(args.runtimes) - set(RUNTIMES)
    if unknown:
        p.error(f"unknown runtimes {sorted(unknown)}; choose from {RUNTIMES}")
    out = run(args)
    data = locomo.load(args.locomo, args.samples)
    texts = [q["question"] for s in data for q in locomo.qa_items(s)][:160]
    batched = asyncio.run(batching(args.batching_runtime, texts))
    print(json.dumps({"runtimes": out, f"batching ({args.batching_runtime})": batched}, indent=2))
    print(f"\n{'runtime':<12} {'p50 ms':>7} {'p95 ms':>7} {'batch/s':>8} {'cos min':>8} {'recall@10':>9}")
    for runtime, r in out.items():
        if "single_ms" not in r:
            print(f"{runtime:<12} {'(the rows above)':>42} {r['locomo_dense_recall@10']:>9}")
            continue
        print(
            f"{runtime:<12} {r['single_ms']['p50']:>7.2f} {r['single_ms']['p95']:>7.2f} "
            f"{r['batch32_per_s']:>8.1f} {r['cosine_vs_first']['min']:>8.4f} "
            f"{r['locomo_dense_recall@10'] if r['locomo_dense_recall@10'] is not None else '-':>9}"
        )
    print(
        f"\nmicro-batching ({args.batching_runtime}): {'case':<30} {'p50 ms':>7} {'p95 ms':>7} {'texts/s':>8}"
    )
    for case, r in batched.items():
        print(f"{'':<26}{case:<30} {r['ms']['p50']:>7.2f} {r['ms']['p95']:>7.2f} {r['texts_per_s']:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
