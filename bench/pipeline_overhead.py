"""Pipeline overhead: the Ray Data pipeline against a plain sequential loop, same engines, same pages.

    python -m bench.pipeline_overhead [--docs 30] [--repeats 1] [--json out.json]

Workload: copies of the scanned sample (image-only PDF pages, so every page goes
through RapidOCR). Every engine is pinned to one inference thread, so one actor uses one core.

It prints, measured in one run:
* sequential loop, 1 thread and the runtimes' default threads (the "best" is the faster);
* the pipeline with 1 and with 2 layout actors (one thread each) in the job's own local
  Ray, already started and warmed up by an untimed one-document run (each run's actor
  start-up and model loading are inside its timing, as in a real run);
* with ``--per-core`` (default on Linux with 2+ cores): the pipeline with 1 actor in a
  local Ray confined to 1 core and with 2 actors in one confined to 2 (CPU affinity,
  inherited by every Ray process; each in a child process, warmed up the same way);
* the ratios against the targets: pipeline / best sequential (>= 0.9), and 2 actors /
  1 actor (>= 1.7) measured per core, i.e. on the runs that give each actor the core it
  is pinned to. 2 actors / 1 actor on the same cores is printed beside it, over the whole
  run and from the first written document on (start-up left out: each run starts fresh
  actor processes, imports Ray Data and the engines and loads the models, the same few
  seconds in a run of any length).

Why per core: on a machine with as many cores as layout actors, the 1-actor run of the
shared pair has a core free for everything that is not layout (driver, Ray's processes,
split and crop tasks, picture OCR) and the 2-actor run has none, so that ratio is bounded
by 2L / (L + O) (L: layout CPU time, O: the rest) and measures the machine as much as
the pipeline. Given one core per actor in both runs, both pay for the rest out of their
actors' cores, and the ratio is the pipeline's own scaling with the cores it is given.

``--repeats N`` runs N interleaved rounds of the runs and keeps each one's fastest: on a
shared machine the speed drifts by 20 % over minutes, which a single round reads as a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from samples.generate import generate


def sequential(inputs: list[Path], threads: int) -> dict:
    """Split + layout (with OCR) + crops + picture OCR, one page after another, in this process.

    As the pipeline does for this engine (it reads the PDF): pages are not rasterized,
    picture crops are rendered from the one-page PDF.
    """
    from configuration.schema import CropConfig
    from documents.crops import render_picture_crops
    from documents.pages import SplitLimits, split_pages
    from engines.base import PageImage, PageMeta
    from engines.pymupdf_layout import PyMuPDFLayoutEngine, PyMuPDFLayoutOptions
    from engines.rapidocr.engine import RapidOCREngine
    from engines.rapidocr.options import RapidOCROptions

    started = time.perf_counter()
    ocr_options = RapidOCROptions(threads=threads)
    layout = PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(threads=threads, rapidocr=ocr_options))
    picture = RapidOCREngine(ocr_options)
    crop = CropConfig().model_dump()  # the job's default crop settings
    pages = 0
    for path in inputs:
        _, _, rendered = split_pages(path.read_bytes(), "pdf", SplitLimits(pixels=False))
        for page in rendered:
            meta = PageMeta(str(path), str(path), page.page_number, page.width, page.height, page.scale,
                            page.pdf_bytes, page.has_text_layer)
            (result,) = layout.layout([PageImage(None, meta)])
            crops = render_picture_crops(page.pdf_bytes, page.scale, page.width, page.height,
                                         [e.to_dict() for e in result.elements], **crop)
            picture.recognize([c.image for c in crops])
            pages += 1
    seconds = time.perf_counter() - started
    return {"pages": pages, "seconds": round(seconds, 2), "pages_per_s": round(pages / seconds, 4)}


def pipeline(input_dir: Path, actors: int, limit: int | None = None) -> dict:
    """The OCR job on ``input_dir`` (its first ``limit`` documents) with ``actors`` layout actors."""
    from configuration import load_config
    from pipeline.run import run_ocr

    config = load_config(overrides=[
        f"ocr.layout.pool.concurrency=[{actors},{actors}]",
        "ocr.layout.pool.batch_size=1",
        # Logical CPUs: each actor really uses one core (one thread), but if the actors'
        # reservations filled the 2 logical CPUs, the split and crop tasks between them
        # could not be scheduled. The CPU stages keep the config's default 0.25 (at most
        # three at once here, so few worker processes).
        "ocr.layout.pool.num_cpus=0.5",
        "ocr.picture.pool.num_cpus=0.2",
        "ocr.layout.options.rapidocr.threads=1",
        "ocr.layout.options.threads=1",
        "ocr.picture.options.threads=1",
        "ocr.progress=false",
    ])
    out = Path(tempfile.mkdtemp(prefix="bench-out-"))
    try:
        documents = sorted(input_dir.glob("*.pdf"))[:limit]
        summary = run_ocr(config, [str(path) for path in documents], out, force=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    assert summary.pages_failed == 0, summary.failures_by_kind
    return {
        "pages": summary.pages_total,
        "seconds": summary.wall_seconds,
        "pages_per_s": summary.pages_per_second,
        "first_document_s": summary.first_document_seconds,
        # From the first finished document on: the start-up (actor processes, imports,
        # model loading; the same few seconds in a run of any length) left out.
        "after_first_pages_per_s": summary.pages_per_second_after_first_document,
        # Seconds the layout actors spent inside the engine, summed over pages: against
        # actors x seconds, how busy the pool was (the rest is start-up and waiting).
        "layout_engine_s": round(summary.stage_seconds.get("layout", 0.0), 2),
    }


def run_child(*worker_args: str) -> dict:
    """This bench in a fresh interpreter (``--sequential-worker`` / ``--pipeline-worker``); its JSON line."""
    output = subprocess.run([sys.executable, "-m", "bench.pipeline_overhead", *worker_args],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _pipeline_worker(input_dir: Path, actors: int, cores: int) -> dict:
    """The pipeline in its own local Ray confined to ``cores`` cores (a child process): pin this process (Ray's processes inherit it), then run."""
    from configuration.schema import ClusterConfig
    from launch.ray_session import ray_connection

    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])
    cluster = ClusterConfig(address="local", num_cpus=cores, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    with ray_connection(cluster):
        pipeline(input_dir, actors, limit=1)  # untimed warm-up, as in the shared-machine runs
        return {**pipeline(input_dir, actors), "cores": cores}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=30, help="scanned two-page documents in the workload")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds of every run; each keeps its fastest")
    parser.add_argument("--per-core", action=argparse.BooleanOptionalAction,
                        default=hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2,
                        help="also run 1 actor on 1 core and 2 actors on 2 cores, each in its own confined Ray")
    parser.add_argument("--sequential-worker", nargs=2, metavar=("DIR", "THREADS"), help=argparse.SUPPRESS)
    parser.add_argument("--pipeline-worker", nargs=3, metavar=("DIR", "ACTORS", "CORES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.pipeline_worker:  # child process: its own local Ray on a few cores
        folder, actors, cores = args.pipeline_worker
        print(json.dumps(_pipeline_worker(Path(folder), int(actors), int(cores))))
        return

    if args.sequential_worker:  # child process: a clean interpreter per thread setting
        folder, threads = Path(args.sequential_worker[0]), int(args.sequential_worker[1])
        print(json.dumps(sequential(sorted(folder.glob("*.pdf")), threads)))
        return

    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    inputs = work / "in"
    paths = generate(work / "samples", copies=args.docs)
    inputs.mkdir()
    for key, path in paths.items():
        if key.startswith("scanned"):
            shutil.copy(path, inputs / path.name)

    figures: dict[str, dict] = {}

    def keep_fastest(name: str, result: dict) -> None:
        if name not in figures or result["pages_per_s"] > figures[name]["pages_per_s"]:
            figures[name] = result

    from configuration.schema import ClusterConfig
    from launch.ray_session import ray_connection

    # The job's own local Ray (niceness, idle workers, loopback), with one OpenMP thread per worker.
    cluster = ClusterConfig(address="local", runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        with ray_connection(cluster):
            # Untimed: the session's first dataset also starts Ray Data's own actors and
            # the first task workers, which would otherwise count against whichever run is first.
            pipeline(inputs, 1, limit=1)
            # Rounds interleave all four runs, so a slow spell of a shared machine hits them alike.
            for _ in range(max(1, args.repeats)):
                for threads in (1, 0):
                    keep_fastest(f"sequential_threads_{threads or 'default'}", run_child("--sequential-worker", str(inputs), str(threads)))
                for actors in (1, 2):
                    keep_fastest(f"pipeline_{actors}_actor", pipeline(inputs, actors))
        # After the shared session is down: these start their own confined local Ray each.
        if args.per_core:
            for _ in range(max(1, args.repeats)):
                for actors in (1, 2):
                    keep_fastest(f"pipeline_{actors}_actor_{actors}_core", run_child("--pipeline-worker", str(inputs), str(actors), str(actors)))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    best_sequential = max(v["pages_per_s"] for k, v in figures.items() if k.startswith("sequential"))
    one, two = figures["pipeline_1_actor"], figures["pipeline_2_actor"]
    ratios = {
        "two_actors_over_one": round(two["pages_per_s"] / one["pages_per_s"], 3),
        # None for a one-document run: no page came after the first document.
        "two_actors_over_one_after_first_document": round(
            two["after_first_pages_per_s"] / one["after_first_pages_per_s"], 3)
        if one["after_first_pages_per_s"] and two["after_first_pages_per_s"] else None,
        "pipeline_over_best_sequential": round(two["pages_per_s"] / best_sequential, 3),
    }
    if args.per_core:
        ratios["two_actors_over_one_per_core"] = round(
            figures["pipeline_2_actor_2_core"]["pages_per_s"] / figures["pipeline_1_actor_1_core"]["pages_per_s"], 3)
    print(f"\n{'run':28} {'pages':>6} {'seconds':>8} {'pages/s':>8} {'first doc s':>12} {'then pages/s':>13} {'engine s':>9}")
    for name, value in figures.items():
        print(f"{name:28} {value['pages']:>6} {value['seconds']:>8} {value['pages_per_s']:>8} "
              f"{value.get('first_document_s', '-')!s:>12} {value.get('after_first_pages_per_s', '-')!s:>13} "
              f"{value.get('layout_engine_s', '-')!s:>9}")
    print("\n(the pipeline's seconds include Ray Data planning, actor start-up and model loading;"
          " then pages/s: from the first document written to the end;"
          " engine s: the layout actors' time inside the engine, summed)")
    if args.per_core:
        print(f"2 actors / 1 actor, per core:     {ratios['two_actors_over_one_per_core']}  (target >= 1.7; 1 actor on 1 core, 2 on 2)")
    else:
        print("2 actors / 1 actor, per core:     not measured (--no-per-core, or fewer than 2 cores)")
    print(f"  on the same cores, whole run:    {ratios['two_actors_over_one']}  "
          "(bounded by 2L / (L + O): the 1-actor run has a core free for the rest)")
    print(f"  on the same cores, from the first document: {ratios['two_actors_over_one_after_first_document']}  (start-up left out)")
    print(f"pipeline / best sequential loop:  {ratios['pipeline_over_best_sequential']}  (target >= 0.9)")
    print(f"cpu count: {os.cpu_count()}")
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
