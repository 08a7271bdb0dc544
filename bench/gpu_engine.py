"""The layout engine's decoding against plain ``generate``, side by side in one run.

Baseline: the method the engines used before static decoding, plain ``generate`` with
a dynamic cache in batches of 18 (``TransformersGenerator``). Engine: this project's
``decode: static`` path (``engines.decoding.static_decoding``: compiled static-cache step, slot
refill, memory-aware slots). Two workloads, both with forced page lengths because a
random-weight model never chooses to stop:

* ``fixed``: every page generates the same number of tokens (1000 on a GPU);
* ``mix``: each page ends at its own length, drawn uniformly from 200 to 3000 tokens
  (end-of-sequence forced there), like real pages of different density.

Printed per workload and method: s/page, generated tokens/s, ms per decode step, peak
GPU memory, and the engine's ratio to the baseline in pages/s. ms/step is the
baseline's wall time over its steps (its one prompt pass per batch is small next to
1000 steps) and the engine's decode time over its steps (its prompt passes, vision
tower included, are printed on their own, which is what says whether overlapping the
vision tower with decoding would pay). The engine's compile time (warm-up at start, as
the actor does) is printed too, and is not in the rate.

CPU (any machine; the tiny Qwen2.5-VL, short pages, to show it runs)::

    python -m bench.gpu_engine

One H100 (builds the DOTS-shaped model with random weights: Qwen2-1.5B text model,
42-layer 1536-wide vision tower, ~3 B parameters, bf16, sdpa; 1008x1008 pages = 1296
visual tokens; no download needed). Each workload fits one 10-minute run::

    python -m bench.gpu_engine --device cuda --shape dots --workload fixed --json fixed.json
    python -m bench.gpu_engine --device cuda --shape dots --workload mix --json mix.json

``--model PATH`` measures a real checkpoint instead of the built one. Needs no Ray.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from engines.decoding.static_decoding import StaticDecodingGenerator, resolve_compile
from engines.generative.generation import Generated, Request, TransformersGenerator, free_accelerator_memory
from vlm.tiny import BENCH_SHAPE, DOTS_SHAPE, text_like_pages

#: Defaults per device: (pages for the engine, pages for the baseline, page WxH, fixed tokens, mix range).
DEFAULTS = {
    "cuda": dict(pages=256, baseline_pages=18, page_size="1008x1008", fixed_tokens=1000, mix="200,3000", batch_size=256),
    "cpu": dict(pages=36, baseline_pages=18, page_size="224x280", fixed_tokens=48, mix="8,96", batch_size=18),
}


def build_model(args: argparse.Namespace) -> tuple[Any, Any]:
    """The checkpoint given, or a random-weight model of the chosen shape built straight on the device."""
    import torch

    if args.model:
        from vlm.loading import ModelSource, load_model_and_processor

        source = ModelSource(model=args.model, device_map=args.device if args.device != "cpu" else None,
                             trust_remote_code=args.trust_remote_code)
        return load_model_and_processor(source, role="layout")
    from vlm.tiny import build_tiny_qwen2_5_vl

    width, height = (int(v) for v in args.page_size.split("x"))
    shape = dict(DOTS_SHAPE) if args.shape == "dots" else dict(BENCH_SHAPE)
    shape["max_pixels"] = max(shape["max_pixels"], width * height)
    dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    with torch.device(args.device):  # weights initialised on the GPU: seconds, not minutes of CPU init
        return build_tiny_qwen2_5_vl(**shape, dtype=dtype)


def page_lengths(workload: str, count: int, fixed: int, low: int, high: int, seed: int) -> list[int]:
    if workload == "fixed":
        return [fixed] * count
    return np.random.default_rng(seed).integers(low, high + 1, size=count).tolist()


def timed(generator: Any, requests: list[Request], budget: int, device: str) -> tuple[list[Generated], float, float | None]:
    """Run once; seconds and peak GPU memory (GiB) measured around it."""
    import torch

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    outputs = generator.generate(requests, budget)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return outputs, seconds, (torch.cuda.max_memory_allocated() / 2**30 if cuda else None)


def summary(method: str, outputs: list[Generated], seconds: float, steps: int, peak: float | None) -> dict[str, Any]:
    tokens = sum(o.new_tokens for o in outputs)
    return {
        "method": method,
        "pages": len(outputs),
        "seconds": round(seconds, 3),
        "s_per_page": round(seconds / len(outputs), 4),
        "pages_per_s": round(len(outputs) / seconds, 4),
        "tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1),
        "decode_steps": steps,
        "ms_per_step": round(1000 * seconds / max(steps, 1), 2),
        "peak_gib": None if peak is None else round(peak, 2),
    }


def run_workload(name: str, model: Any, processor: Any, args: argparse.Namespace, engine: StaticDecodingGenerator) -> dict[str, Any]:
    width, height = (int(v) for v in args.page_size.split("x"))
    low, high = (int(v) for v in args.mix.split(","))
    lengths = page_lengths(name, args.pages, args.fixed_tokens, low, high, args.seed)
    print(f"\n[{name}] {args.pages} pages, {min(lengths)}-{max(lengths)} tokens each (mean {np.mean(lengths):.0f}); "
          f"the baseline decodes the first {args.baseline_pages}", flush=True)
    budget = max(lengths) + 1  # room for the forced end-of-sequence token
    images = text_like_pages([(height, width)] * args.pages, seed=args.seed)
    requests = [Request(image=image, prompt="Extract the layout.", stop_after=n) for image, n in zip(images, lengths)]
    baseline_requests = requests[: args.baseline_pages]

    # The baseline first, with no engine cache allocated, so its peak memory is its own.
    engine.pool.clear()
    free_accelerator_memory()
    baseline = TransformersGenerator(model, processor, batch_size=args.baseline_batch)
    baseline.generate(baseline_requests[:1], 2)  # first-call costs (kernel loading, allocator) out of the timing
    baseline_out, baseline_s, baseline_peak = timed(baseline, baseline_requests, budget, args.device)
    chunks = [lengths[i : i + args.baseline_batch] for i in range(0, len(baseline_requests), args.baseline_batch)]
    baseline_steps = sum(max(chunk) + 1 for chunk in chunks)  # generate runs each batch to its longest page (+ its end token)
    baseline_row = summary(f"baseline (generate, dynamic, batch {args.baseline_batch})", baseline_out, baseline_s, baseline_steps, baseline_peak)
    print_row(name, baseline_row)

    compile_s = engine.warm_up(requests[:1], budget)  # what the actor does at start; not part of the rate
    before = asdict(engine.stats)
    outputs, seconds, peak = timed(engine, requests, budget, args.device)
    delta = {key: value - before[key] for key, value in asdict(engine.stats).items() if key != "batch_shapes"}
    engine_row = summary("engine (static, slot refill)", outputs, seconds, delta["steps"], peak)
    engine_row["ms_per_step"] = round(1000 * delta["decode_s"] / max(delta["steps"], 1), 2)  # decode steps only
    engine_row.update(
        compile_s=round(compile_s, 1),
        slots=max(slots for slots, _ in engine.stats.batch_shapes),
        slot_occupancy=round(delta["busy_slot_steps"] / max(delta["slot_steps"], 1), 3),
        prompt_pass_s=round(delta["prefill_s"], 2),
        refills=delta["prefills"],
        compactions=delta["compactions"],
    )
    print_row(name, engine_row)

    same = [a == b for a, b in zip(outputs, baseline_out)]
    return {
        "workload": name,
        "lengths": {"min": min(lengths), "max": max(lengths), "mean": round(float(np.mean(lengths)), 1)},
        "baseline": baseline_row,
        "engine": engine_row,
        "ratio_pages_per_s": round(engine_row["pages_per_s"] / baseline_row["pages_per_s"], 2),
        "same_outputs_on_shared_pages": f"{sum(same)}/{len(same)}",
    }


def print_row(workload: str, row: dict[str, Any]) -> None:
    memory = "" if row["peak_gib"] is None else f", peak {row['peak_gib']} GiB"
    print(f"  [{workload}] {row['method']:<38} {row['pages']:>4} pages: {row['s_per_page']:.4f} s/page, "
          f"{row['tokens_per_s']:.0f} tokens/s, {row['ms_per_step']:.2f} ms/step{memory}", flush=True)


def print_result(result: dict[str, Any]) -> None:
    engine = result["engine"]
    print(f"  engine: {engine['slots']} slots, occupancy {engine['slot_occupancy']:.0%}, {engine['refills']} prompt passes "
          f"({engine['prompt_pass_s']} s of {engine['seconds']} s), {engine['compactions']} compactions; "
          f"compiled/warmed up in {engine['compile_s']} s (not in the rate)")
    print(f"  ratio: engine {result['ratio_pages_per_s']:.2f}x the baseline's pages/s; "
          f"greedy outputs identical on the {result['same_outputs_on_shared_pages']} pages both ran")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--shape", choices=["tiny", "dots"], default="tiny", help="model built when --model is not given")
    parser.add_argument("--model", help="checkpoint folder instead of a built model")
    parser.add_argument("--trust-remote-code", action="store_true", help="run the checkpoint's own code (the published dots.ocr needs it)")
    parser.add_argument("--workload", choices=["fixed", "mix", "both"], default="both")
    parser.add_argument("--pages", type=int, help="pages the engine decodes per workload")
    parser.add_argument("--baseline-pages", type=int, help="pages the baseline decodes (one batch of 18 by default: ~105 ms/step on an H100)")
    parser.add_argument("--baseline-batch", type=int, default=18)
    parser.add_argument("--page-size", help="WxH of the page images")
    parser.add_argument("--fixed-tokens", type=int, help="tokens per page, fixed workload")
    parser.add_argument("--mix", help="LOW,HIGH tokens per page, mix workload")
    parser.add_argument("--batch-size", type=int, help="engine: most slots (lowered to fit --memory-fraction on CUDA)")
    parser.add_argument("--memory-fraction", type=float, default=0.85)
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto", help="engine's decode step (auto: on CUDA)")
    parser.add_argument("--threads", type=int, default=1, help="CPU: torch threads (the CPU machine is shared; 1 keeps timings steady)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    for key, value in DEFAULTS["cuda" if args.device.startswith("cuda") else "cpu"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    import torch

    if not args.device.startswith("cuda"):
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    model, processor = build_model(args)
    print(f"model {args.model or args.shape} ({sum(p.numel() for p in model.parameters()) / 1e6:,.1f} M parameters, {model.dtype}, "
          f"{model.config._attn_implementation}) on {args.device}, built in {time.perf_counter() - started:.0f} s; "
          f"pages {args.page_size}")
    engine = StaticDecodingGenerator(model, processor, batch_size=args.batch_size, memory_fraction=args.memory_fraction,
                                     compile=resolve_compile(args.compile, model))
    results = []
    for workload in (["fixed", "mix"] if args.workload == "both" else [args.workload]):
        result = run_workload(workload, model, processor, args, engine)
        print_result(result)
        results.append(result)
        if args.json:  # after each workload: a run cut short keeps what it measured
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2))


if __name__ == "__main__":
    main()
