"""`python -m app.providers.onnx_export [--cache-dir DIR]`: export the shipped all-MiniLM-L6-v2
weights to ONNX (fp32, with mean pooling and L2 normalisation in the graph) and quantise two
copies: `onnx-int8` (ONNX Runtime's dynamic quantisation, per channel) and `onnx-q8` (8 bits per
block of 32, MatMulNBits; see quantize_blocks).

The fp32 graph is exported from the model's eager attention (not torch's fused SDPA, whose
exported pattern ONNX Runtime does not recognise) and then given ONNX Runtime's BERT fusions
(Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu): the same vectors (min
cosine 0.9999993, max difference 2e-7 on LoCoMo questions and turns) for ~8 % less time per
question on one thread (p50 5.18 -> 4.75 ms, interleaved, quiet machine).

`make setup` runs it; the service runs it in a subprocess at its first start when the files are
missing. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from app.providers.local_model import ONNX_FILES, default_cache_dir, export_dir, model_dir
from app.settings import load_settings

# Inputs per block of the onnx-q8 graph's weights and activations. LoCoMo dense recall@10 (exact
# search): fp32 50.68 %, blocks of 32 50.68 %, blocks of 128 50.08 % (those 0.5 ms faster a turn).
Q8_BLOCK = 32


def _pooled_model() -> Any:
    import torch
    from transformers import AutoModel

    class Pooled(torch.nn.Module):  # type: ignore[misc]
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    return Pooled(AutoModel.from_pretrained(str(model_dir()), attn_implementation="eager").eval())


def quantize_blocks(fused: Any, path: Path) -> None:
    """The fused graph with its MatMul weights in 8 bits per block of Q8_BLOCK inputs, one scale
    each (ONNX Runtime's MatMulNBits); accuracy level 4 quantises the activations per block too, at
    run time, and multiplies in int8. Small blocks keep the error small: min cosine to fp32 0.9998
    on LoCoMo questions (per-channel int8 with one activation scale per pass: 0.988), and a text's
    vector does not depend on the texts batched with it. The attention's own projections stay fp32
    (inside the fused Attention node)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(
        fused,  # changed in place: the fp32 file is written before
        bits=8,
        block_size=Q8_BLOCK,
        is_symmetric=True,
        accuracy_level=4,
    )
    quantizer.process()
    onnx.save(quantizer.model.model, str(path))


def export(cache_dir: Path) -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    target = export_dir(cache_dir)
    target.mkdir(parents=True, exist_ok=True)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = torch.ones((2, 8), dtype=torch.long)
    # Written under temporary names, then renamed: a concurrent start never reads half a file.
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        plain, fp32, int8 = Path(tmp) / "plain.onnx", Path(tmp) / "model.onnx", Path(tmp) / "model-int8.onnx"
        model = _pooled_model()
        with torch.no_grad():
            torch.onnx.export(
                model,
                (sample, sample, torch.zeros_like(sample)),
                str(plain),
                input_names=names,
                output_names=["embedding"],
                dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "embedding": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        config = model.bert.config
        fused = optimizer.optimize_model(
            str(plain),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
        )
        fused.save_model_to_file(str(fp32))
        # Per-channel scales: cosine to fp32 >= 0.988 on LoCoMo questions (per-tensor: 0.94).
        # From the unfused graph: the quantiser would turn the fused Attention into QAttention.
        quantize_dynamic(str(plain), str(int8), weight_type=QuantType.QInt8, per_channel=True)
        blocks = Path(tmp) / "model-q8.onnx"
        quantize_blocks(fused.model, blocks)
        os.replace(fp32, target / "model.onnx")
        os.replace(int8, target / "model-int8.onnx")
        os.replace(blocks, target / "model-q8.onnx")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.providers.onnx_export", description=__doc__)
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="default: the setting nubase.mem.embedding.onnx-cache-dir, else ~/.cache/memory/onnx",
    )
    parser.add_argument("--if-missing", action="store_true", help="do nothing when every graph exists")
    args = parser.parse_args(argv)
    configured = load_settings().mem.embedding_onnx_cache_dir
    cache_dir = args.cache_dir or (Path(configured) if configured else default_cache_dir())
    target = export_dir(cache_dir)
    if args.if_missing and all((target / name).exists() for name in ONNX_FILES.values()):
        print(f"ONNX graphs already in {target}")
        return 0
    print(f"ONNX graphs written to {export(cache_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
