"""`python -m bench [--only PART] [--sizes 10000,100000] ...`

(see --help)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import (
    corpus,
    latency,
    locomo,
    mcp_overhead,
    mem0_overhead,
    noisy,
    peers,
    pipeline,
    queue_adds,
    report,
    studio_pages,
)
from bench.progress import log
from bench.service import ROOT, Service, attach_external, start_managed


def _ints(text: str) -> list[int]:
    return [int(x.replace("_", "").replace("k", "000")) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--only",
        choices=["locomo", "latency", "pipeline", "noisy", "mcp", "mem0", "queue", "studio", "peers"],
        help="run one part only (default: all of them)",
    )
    p.add_argument("--noisy-flood", type=int, default=None, help="noisy neighbour: A's requests (3000)")
    p.add_argument("--pipeline-adds", type=int, default=None, help="infer=true adds at concurrency 1 (100)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 LoCoMo conversation, 2000 memories over 100 users, few queries",
    )
    p.add_argument("--sizes", type=_ints, default=None, help="corpus sizes, e.g. 10000,100000 (the default)")
    p.add_argument("--users", type=int, default=None, help="users the corpus is spread over (default 1000)")
    p.add_argument(
        "--queries",
        type=int,
        default=None,
        help="search requests per latency setting (default 600; also capped by --time-cap)",
    )
    p.add_argument("--concurrency", type=_ints, default=[1, 16], help="latency concurrencies (default 1,16)")
    p.add_argument(
        "--big-user",
        type=int,
        default=None,
        help="memories of the single-big-user case, a separate tenant (default 20000; 0 = skip)",
    )
    p.add_argument(
        "--recall-pairs", type=int, default=None, help="(user, query) pairs for recall vs exact (200)"
    )
    p.add_argument(
        "--distinct-queries", type=int, default=None, help="distinct latency queries (default 300)"
    )
    p.add_argument(
        "--time-cap", type=float, default=60.0, help="seconds at most per request loop (default 60)"
    )
    p.add_argument("--seed", type=int, default=42, help="corpus seed (default 42)")
    p.add_argument(
        "--locomo",
        type=Path,
        default=ROOT.parent / "shared" / "bench" / "locomo-dev.json",
        help="the LoCoMo file (default ../shared/bench/locomo-dev.json)",
    )
    p.add_argument(
        "--locomo-samples", type=int, default=None, help="first N conversations only (default all)"
    )
    p.add_argument(
        "--locomo-concurrency",
        type=int,
        default=1,
        help="concurrency of the measured LoCoMo searches (default 1)",
    )
    p.add_argument("--add-concurrency", type=int, default=16, help="adds in flight for LoCoMo (default 16)")
    p.add_argument(
        "--studio-memories", type=int, default=None, help="one owner's memories for Studio's pages (10000)"
    )
    p.add_argument(
        "--peers-size",
        type=int,
        default=None,
        help="peers: memories of the corpus both sides hold (default 100000 over --users; 0 = LoCoMo only)",
    )
    p.add_argument("--url", help="benchmark an already running service instead of starting one")
    p.add_argument("--admin-key", default=os.environ.get("MEM_ADMIN_KEY"), help="with --url")
    p.add_argument("--database-url", help="with --url: a superuser DSN of its PostgreSQL (for seeding)")
    p.add_argument("--pid", type=int, help="with --url: the service's pid, for RSS")
    p.add_argument("--keep-data", action="store_true", help="keep the bench databases after the run")
    p.add_argument(
        "--out", type=Path, default=report.RESULTS, help="results directory (default bench/results)"
    )
    args = p.parse_args(argv)
    q = args.quick
    args.sizes = args.sizes or ([2000] if q else [10_000, 100_000])
    args.users = args.users or (100 if q else 1000)
    args.queries = args.queries or (100 if q else 600)
    args.big_user = args.big_user if args.big_user is not None else (2000 if q else 20_000)
    args.recall_pairs = args.recall_pairs or (50 if q else 200)
    args.distinct_queries = args.distinct_queries or (100 if q else 300)
    args.locomo_samples = args.locomo_samples or (1 if q else None)
    args.pipeline_adds = args.pipeline_adds or (20 if q else 100)
    args.noisy_flood = args.noisy_flood or (500 if q else 3000)
    args.studio_memories = args.studio_memories or (2000 if q else 10_000)
    if args.peers_size is None:
        args.peers_size = 2000 if q else 100_000
    if args.url and not args.admin_key:
        p.error("--url needs --admin-key (or MEM_ADMIN_KEY)")
    return args


def own_service_parts(args: argparse.Namespace) -> dict[str, Callable[[], Awaitable[dict[str, Any]]]]:
    """The parts that start a service of their own (never against --url), in the order they run."""
    data = ROOT / "bench" / ".data"
    return {
        # The chat and embedding providers are a fake server of fixed latency.
        "pipeline": lambda: pipeline.run(
            data,
            args.out / "service-pipeline.log",
            adds=args.pipeline_adds,
            adds_c16=4 * args.pipeline_adds,
            time_cap=args.time_cap,
        ),
        # Tenant A floods while tenant B searches (issue 9).
        "noisy": lambda: noisy.run(
            data, args.out / "service-noisy.log", flood_requests=args.noisy_flood, time_cap=args.time_cap
        ),
        # search_memories through /mcp against POST /mem/v1/search (issue 12).
        "mcp": lambda: mcp_overhead.run_managed(
            data, args.out / "service-mcp.log", memories=100, queries=100 if args.quick else 300
        ),
        # POST /mem0/v3/memories/search/ against POST /mem/v1/search (issue 8).
        "mem0": lambda: mem0_overhead.run_managed(
            data, args.out / "service-mem0.log", memories=100, queries=100 if args.quick else 400
        ),
        # Async adds on the durable queue, one service per worker count (issue 8).
        "queue": lambda: queue_adds.run(
            data,
            args.out,
            accepts=50 if args.quick else 200,
            sequential=5 if args.quick else 20,
            c16=32 if args.quick else 160,
        ),
    }


async def run(args: argparse.Namespace, results: dict[str, Any]) -> None:
    do_locomo = args.only in (None, "locomo")
    do_latency = args.only in (None, "latency")
    do_studio = args.only in (None, "studio")
    do_peers = args.only in (None, "peers") and not args.url
    parts = own_service_parts(args)
    if not args.url:
        for name, part in parts.items():
            if args.only in (None, name):
                results[name] = await part()
    if args.only in parts:
        return
    prepared = await prepare_corpus(args, results, do_latency, do_peers)
    service: Service
    if args.url:
        service = await attach_external(args.url, args.admin_key, args.database_url, args.pid)
    else:
        service = await start_managed(ROOT / "bench" / ".data", args.out / "service.log")
    results["service"] = {
        "url": service.url,
        "pid": service.pid,
        "startup_s": service.startup_seconds,
        "rss_after_start_bytes": service.rss_bytes(),
        "managed": not args.url,
    }
    try:
        signals_status = None
        if do_locomo:
            results["locomo"] = await locomo.run(
                service,
                args.locomo,
                max_samples=args.locomo_samples,
                add_concurrency=args.add_concurrency,
                search_concurrency=args.locomo_concurrency,
                time_cap=max(args.time_cap, 600),
            )
            signals_status = results["locomo"]["signals"]["status"]
            results["service"]["rss_after_locomo_bytes"] = service.rss_bytes()
        if do_latency:
            await run_latency(args, service, prepared, results["latency"], signals_status)
        if do_studio:
            # Studio's pages for one owner with 10,000 memories (issue 10: under 300 ms each).
            results["studio"] = await studio_pages.run(service, memories=args.studio_memories, seed=args.seed)
        if do_peers:
            results["peers"] = await run_peers(args, service, prepared)
    finally:
        results["service"]["rss_at_end_bytes"] = service.rss_bytes()
        log("service: stopping")
        await service.stop(keep_data=args.keep_data)


async def prepare_corpus(
    args: argparse.Namespace, results: dict[str, Any], do_latency: bool, do_peers: bool
) -> dict[str, Any]:
    """Setup first, before the service starts: the corpus and its vectors (cached on disk)."""
    if not (do_latency or (do_peers and args.peers_size)):
        return {}
    t = time.monotonic()
    embedder = await corpus.CorpusEmbedder.start()
    n = max([*args.sizes, args.big_user, args.peers_size] if do_latency else [args.peers_size])
    try:
        texts, vectors = await corpus.embeddings(args.seed, n, embedder)
        queries = corpus.make_queries(args.seed, args.distinct_queries)
        qvecs = await corpus.query_embeddings(args.seed, queries, embedder)
    finally:
        await embedder.close()
    results["latency" if do_latency else "peers_corpus"] = {
        "corpus": {
            "seed": args.seed,
            "version": corpus.corpus_version(),
            "model": embedder.model,
            "sentences": n,
            "distinct_queries": len(queries),
            "prepare_seconds": round(time.monotonic() - t, 2),
            "examples": texts[:5],
            "query_examples": queries[:5],
        },
        "cases": {},
        "notes": [],
    }
    log(f"corpus: {n} sentences and {len(queries)} queries ready in {time.monotonic() - t:.1f}s")
    return {"texts": texts, "vectors": vectors, "queries": queries, "qvecs": qvecs}


async def run_peers(args: argparse.Namespace, service: Service, prep: dict[str, Any]) -> dict[str, Any]:
    case = None
    if args.peers_size:
        n = args.peers_size
        users = corpus.assign_users(args.seed, n, args.users)
        case = latency.Case(f"peers {n}", prep["texts"][:n], prep["vectors"][:n], users)
    return await peers.run(
        service,
        locomo_path=args.locomo,
        max_samples=args.locomo_samples,
        corpus_case=case,
        queries=prep.get("queries", []),
        qvecs=prep.get("qvecs"),
        pairs=args.recall_pairs,
        seed=args.seed,
        work_dir=ROOT / "bench" / ".data" / "mem0",
    )


async def run_latency(
    args: argparse.Namespace, service: Service, prep: dict[str, Any], out: dict[str, Any], signals: str | None
) -> None:
    texts, vectors, queries, qvecs = prep["texts"], prep["vectors"], prep["queries"], prep["qvecs"]
    cases: list[tuple[str, latency.Case]] = []
    for n in args.sizes:
        label = f"N={n // 1000}k" if n % 1000 == 0 else f"N={n}"
        cases.append(
            (
                label,
                latency.Case(label, texts[:n], vectors[:n], corpus.assign_users(args.seed, n, args.users)),
            )
        )
    if args.big_user:
        n = args.big_user
        label = f"1 user x {n // 1000}k" if n % 1000 == 0 else f"1 user x {n}"
        cases.append((label, latency.Case(label, texts[:n], vectors[:n], ["user_big"] * n)))
    for label, case in cases:
        tenant = await service.create_tenant(f"bench-{label}")
        seeded = await latency.seed(service, tenant, case)
        log(f"{label}: seeded {seeded['rows']} rows in {seeded['seconds']}s (tenant {tenant.ref})")
        if signals is None:
            async with httpx.AsyncClient(base_url=service.url, headers=tenant.headers, timeout=60) as client:
                probe = await locomo.probe_signals(client, case.users[0], queries[0])
            out["signals"] = probe
            signals = probe["status"]
            log(f"latency: signals {signals}: {probe['detail']}")
        measured = await latency.measure(
            service,
            tenant,
            case,
            queries,
            qvecs,
            requests=args.queries,
            concurrencies=args.concurrency,
            time_cap=args.time_cap,
            recall_pairs=args.recall_pairs,
            signals_ok=signals != "rejected",
            seed=args.seed,
        )
        out["cases"][label] = {"tenant": tenant.ref, "seed": seeded, **measured}
    notes = out["notes"]
    if signals == "rejected":
        notes.append("the API rejected `signals`: recall vs exact used the default (fused) search")
    elif signals == "not_validated":
        notes.append("`signals` is not validated by the API (may be ignored): recall vs exact may be fused")
    if not any(
        m.get("server_timing_present") for c in out["cases"].values() for m in c.get("search", {}).values()
    ):
        notes.append(
            "no Server-Timing header on search responses (start the service with MEM_SERVER_TIMING=true): "
            "server-side times are null"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    results: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": report.machine_info(),
        "config": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "admin_key"
        },
    }
    code = 0
    try:
        asyncio.run(run(args, results))
    except KeyboardInterrupt:
        results["error"] = "interrupted"
        code = 130
    except Exception as exc:
        results["error"] = f"{type(exc).__name__}: {exc}"
        results["traceback"] = traceback.format_exc()
        traceback.print_exc()
        code = 1
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["ratios"] = report.ratios(results)
    path = report.write(results, args.out)
    print()
    print(report.summary(results))
    if "noisy" in results:
        print("\n" + noisy.summary(results["noisy"]))
    if "queue" in results:
        print(queue_adds.summary(results["queue"]))
    if "peers" in results:
        print("\n" + peers.summary(results["peers"]))
    print(f"\nresults: {path} (and {args.out / 'latest.json'}), {results['duration_s']}s in all")
    return code


if __name__ == "__main__":
    sys.exit(main())
