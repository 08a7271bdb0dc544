"""Low-rank compression and image-token pooling against the uncompressed model, in one run.

CPU (any machine)::

    python -m bench.compression [--json results.json]

builds a small random-weight Qwen2.5-VL checkpoint (hidden 256, 4 layers, a 128-wide
4-block vision tower), renders a few page-like images, and for every combination of a
low-rank ratio (``compression.lowrank.compress``; 1 = uncompressed) and a pooling
factor (``compression.pooling``, avg) prints: parameters, measured FLOPs (vision
encoder, prefill = LM over the prompt, decode per token, see ``compression.flops``),
the CPU latency of a full prefill (vision + LM + last-position logits; median of
``--repeats``, all variants timed interleaved in the same run so drifting machine load
hits them alike), each as a ratio to the uncompressed unpooled model, and the output
error: ``||logits - logits_ref|| / ||logits_ref||`` on the last prompt position.

The weights are random, so the errors say how far each knob moves the outputs of this
network, not what they cost in OCR accuracy: a trained model's weights have far faster
decaying spectra than random ones (low-rank errors here are pessimistic).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from compression.flops import count_flops
from compression.pooled_prompts import PooledProcessor
from compression.pooling import PoolingConfig, apply_token_pooling
from vlm.tiny import BENCH_SHAPE, save_tiny_qwen2_5_vl, text_like_pages


@dataclass
class Variant:
    ratio: float
    pool: int
    model: Any = None
    inputs: Any = None
    params: int = 0
    flops: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    error: float = 0.0
    visual_tokens: int = 0
    prompt_length: int = 0

    @property
    def name(self) -> str:
        return f"rank 1/{self.ratio:g}, pool {self.pool}"


def build_inputs(processor: Any, pages: list[Image.Image], pool: int) -> Any:
    messages = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Extract the text of this page."}]}] for _ in pages]
    texts = [processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in messages]
    return PooledProcessor(processor, PoolingConfig(factor=pool))(text=texts, images=pages, return_tensors="pt", padding=True)


def last_logits(model: Any, inputs: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, logits_to_keep=1).logits[:, -1].float()


def time_prefill(model: Any, inputs: Any) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        model(**inputs, use_cache=True, logits_to_keep=1)
    return time.perf_counter() - start


def run(ratios: list[float], pools: list[int], repeats: int, pages: int, seed: int) -> tuple[list[Variant], dict[str, Any]]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    try:
        from compression.lowrank import compress
    except ImportError as error:  # the low-rank module is built alongside; the bench needs it for ratios > 1
        if any(r != 1 for r in ratios):
            raise SystemExit(f"compression.lowrank is not importable ({error}); run with --ratios 1") from error
        compress = None

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_tiny_qwen2_5_vl(Path(tmp) / "bench-qwen", seed=seed, **BENCH_SHAPE)
        processor = AutoProcessor.from_pretrained(path)
        base = AutoModelForImageTextToText.from_pretrained(path, attn_implementation="sdpa").eval()
    sizes = [(448, 336), (392, 280), (336, 448), (420, 308)][:pages]
    images = text_like_pages(sizes, seed)

    variants = []
    for ratio in ratios:
        compressed = copy.deepcopy(base)
        if ratio != 1:
            compress(compressed, float(ratio))
        for pool in pools:
            model = compressed if pool == pools[-1] else copy.deepcopy(compressed)
            if pool != 1:
                apply_token_pooling(model, PoolingConfig(factor=pool))
            variant = Variant(ratio=ratio, pool=pool, model=model, inputs=build_inputs(processor, images, pool))
            variant.params = sum(p.numel() for p in model.parameters())
            report = count_flops(model, variant.inputs, decode_tokens=4)
            variant.flops = {
                "vision": report.vision.measured,
                "prefill": report.prefill.measured,
                "decode": report.decode_per_token.measured,
                "vision_analytic_ratio": report.vision.ratio,
                "prefill_analytic_ratio": report.prefill.ratio,
                "decode_analytic_ratio": report.decode_per_token.ratio,
            }
            variant.visual_tokens, variant.prompt_length = report.visual_tokens, report.prompt_length
            variants.append(variant)

    reference = last_logits(variants[0].model, variants[0].inputs)
    for variant in variants:
        diff = last_logits(variant.model, variant.inputs) - reference
        variant.error = float(diff.norm() / reference.norm())
    for variant in variants:  # warm-up, not timed
        time_prefill(variant.model, variant.inputs)
    for _ in range(repeats):  # interleaved: every variant once per round
        for variant in variants:
            variant.latencies.append(time_prefill(variant.model, variant.inputs))
    meta = dict(
        shape=BENCH_SHAPE,
        pages=[list(s) for s in sizes],
        patches=int(variants[0].inputs["image_grid_thw"].prod(-1).sum()),
        repeats=repeats,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
    )
    return variants, meta


def results(variants: list[Variant]) -> list[dict[str, Any]]:
    ref = variants[0]
    ref_latency = statistics.median(ref.latencies)
    rows = []
    for v in variants:
        latency = statistics.median(v.latencies)
        rows.append(
            dict(
                ratio=v.ratio,
                pool=v.pool,
                params=v.params,
                visual_tokens=v.visual_tokens,
                prompt_length=v.prompt_length,
                flops=v.flops,
                prefill_latency_s=latency,
                relative=dict(
                    params=v.params / ref.params,
                    vision=v.flops["vision"] / ref.flops["vision"],
                    prefill=v.flops["prefill"] / ref.flops["prefill"],
                    decode=v.flops["decode"] / ref.flops["decode"],
                    latency=latency / ref_latency,
                ),
                logit_error=v.error,
            )
        )
    return rows


def print_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"compression vs the uncompressed model ({meta['patches']} patches, {len(meta['pages'])} pages, median of {meta['repeats']})")
    for column in ("low-rank", "pool", "params", "vis tok", "vision FLOPs", "prefill FLOPs", "decode FLOPs/tok", "prefill latency", "logit err"):
        table.add_column(column, justify="right")
    for row in rows:
        rel, flops = row["relative"], row["flops"]
        table.add_row(
            "none" if row["ratio"] == 1 else f"1/{row['ratio']:g}",
            str(row["pool"]),
            f"{row['params'] / 1e6:.2f}M ({rel['params']:.2f}x)",
            str(row["visual_tokens"]),
            f"{flops['vision'] / 1e9:.2f}G ({rel['vision']:.2f}x)",
            f"{flops['prefill'] / 1e9:.3f}G ({rel['prefill']:.2f}x)",
            f"{flops['decode'] / 1e6:.2f}M ({rel['decode']:.2f}x)",
            f"{row['prefill_latency_s'] * 1e3:.1f}ms ({rel['latency']:.2f}x)",
            f"{row['logit_error']:.3f}",
        )
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=200)
    console.print(table)
    worst = max(abs(row["flops"][f"{p}_analytic_ratio"] - 1) for row in rows for p in ("vision", "prefill", "decode"))
    console.print(f"measured/analytic FLOPs agree within {worst:.2%} on every row and phase (ratios: x the uncompressed, unpooled model).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratios", default="1,1.5,2,3,5", help="low-rank compression ratios (1 = uncompressed)")
    parser.add_argument("--pools", default="1,2,4", help="avg pooling factors (1 = none)")
    parser.add_argument("--repeats", type=int, default=5, help="timed prefill rounds per variant")
    parser.add_argument("--pages", type=int, default=3, help="page images in the batch (1-4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results to this file")
    args = parser.parse_args(argv)
    ratios = [float(r) for r in args.ratios.split(",")]
    pools = [int(p) for p in args.pools.split(",")]
    if ratios[0] != 1 or pools[0] != 1:
        parser.error("the first ratio and pool must be 1: everything is relative to the uncompressed, unpooled model")
    if not 1 <= args.pages <= 4:
        parser.error("--pages must be between 1 and 4")
    variants, meta = run(ratios, pools, args.repeats, args.pages, args.seed)
    rows = results(variants)
    print_table(rows, meta)
    if args.json:
        args.json.write_text(json.dumps(dict(meta=meta, results=rows), indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
