"""Bounded memory: the OCR job's driver RSS and object-store use stay flat as the input grows 10x.

    python -m bench.streaming_memory [--pages 200,2000] [--pages-per-doc 20] [--dpi 72] [--cheap] [--rows pixels|pdf]
                                     [--set KEY=VALUE ...]
                                     [--json out.json]

Workload: born-digital PDFs of ``--pages-per-doc`` pages, built from the generated sample
(``samples.generate``: text layer, a table, and on every second page a picture whose
words exist only as pixels, so picture OCR runs on it). Each size runs the real job
(``pipeline.run``, CPU engines: PyMuPDF layout + RapidOCR picture OCR, the project's
default pools) in a fresh child process with its own local Ray (on 127.0.0.1 only, token
auth as ``ray.init`` sets it up), so one size's peaks cannot leak into the other's.

Printed per size: pages, seconds, pages/s; peak driver RSS (the kernel's high-water mark,
``ru_maxrss``, of the child that is the driver) and its growth over the RSS right after
Ray started; peak object-store use (the raylet's ``object_store_bytes_used``, polled 4x
a second) against the store's capacity; bytes spilled to and restored from disk. Then the
ratios 2000/200 of the peaks: a streaming job keeps them near 1 (a job that collected
the input or its results would grow them about 10x).

Spilling is Ray's default (``automatic_object_spilling_enabled``, to the session's
``spill`` folder) and this project does not change it; the run prints the spilling
setting it found and whether anything was spilled.

The real engines are slow on a 2-core machine (about 0.55 pages/s here, so the default
200 + 2000 pages take about an hour). Cheap mode, ``--cheap``, swaps them for
``TextLayerLayout`` below (the page's text-layer blocks through PyMuPDF: no layout model,
no OCR, picture OCR off) and runs the 2200 pages in minutes. Everything that decides
memory is unchanged: the same pipeline, blocks, pools and backpressure; only the time
spent inside the engine call differs. Its rows are the heavier kind: it declares no
``reads = "pdf"``, so pages are rasterized for it and their pixels travel to it, as they
do for an engine that reads pixels (DOTS); the real PyMuPDF engine reads only the PDF.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from samples.generate import make_born_digital

#: Cheap mode's layout engine, loaded by the pipeline's plug-in rule ("module:Class").
CHEAP_LAYOUT = "bench.streaming_memory:TextLayerLayout"


class TextLayerLayout:
    """Cheap mode's layout engine: the page's text-layer blocks as Text elements (PyMuPDF; no model, no OCR)."""

    name = "text-layer"

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, options: BaseModel):
        self.options = options

    def layout(self, pages):
        import pymupdf

        from engines.base import Element, PageLayout

        results = []
        for page in pages:
            elements = []
            if page.meta.pdf_bytes:
                with pymupdf.open(stream=page.meta.pdf_bytes, filetype="pdf") as document:
                    scale = page.meta.scale
                    for x0, y0, x1, y1, text, _, kind in document[0].get_text("blocks"):
                        if kind == 0 and text.strip():
                            elements.append(Element([x0 * scale, y0 * scale, x1 * scale, y1 * scale], "Text", text.strip()))
            results.append(PageLayout(elements=elements, info={"text_layer": True}))
        return results


class TextLayerLayoutOfPdf(TextLayerLayout):
    """``TextLayerLayout`` that declares it reads the one-page PDF, as the real PyMuPDF engine does: rows carry the
    PDF, not the rasterized page (``--rows pdf``)."""

    reads = "pdf"


def make_inputs(folder: Path, pages: int, pages_per_doc: int) -> int:
    """Write ``pages`` pages as PDFs of ``pages_per_doc`` pages each; returns the number of documents."""
    import pymupdf

    folder.mkdir(parents=True, exist_ok=True)
    sample = folder.parent / "sample.pdf"
    if not sample.exists():
        make_born_digital(sample)
    source = pymupdf.open(sample)

    def document(count: int) -> bytes:
        out = pymupdf.open()
        while out.page_count < count:
            last = min(source.page_count, count - out.page_count) - 1
            out.insert_pdf(source, from_page=0, to_page=last)
        return out.tobytes(garbage=3, deflate=True)

    full, rest = divmod(pages, pages_per_doc)
    blob = document(pages_per_doc) if full else b""
    for index in range(full):
        (folder / f"doc_{index:05d}.pdf").write_bytes(blob)
    if rest:
        (folder / f"doc_{full:05d}.pdf").write_bytes(document(rest))
    return full + (1 if rest else 0)


class StorePoller(threading.Thread):
    """Polls the raylet's object-store statistics (used bytes, spilled bytes) and the driver's RSS."""

    def __init__(self, interval_s: float = 0.25):
        super().__init__(daemon=True)
        import psutil
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address
        from ray._private.worker import _global_node

        self.interval_s = interval_s
        self.process = psutil.Process()
        self.state = get_state_from_address(_global_node.gcs_address)
        self.reply = lambda: get_memory_info_reply(self.state)
        self.peak_store = 0
        self.peak_rss = 0
        self.samples = 0
        self.errors = 0
        self.stop = threading.Event()

    def sample(self):
        self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
        stats = self.reply().store_stats
        self.peak_store = max(self.peak_store, stats.object_store_bytes_used)
        self.samples += 1
        return stats

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - a missed sample is not a failed benchmark
                self.errors += 1
            self.stop.wait(self.interval_s)


def spilling_setting() -> str:
    """What this Ray does when its object store fills (read from the node Ray started here)."""
    from ray._private.worker import _global_node

    config = getattr(_global_node, "_config", {}) or {}
    if not config.get("automatic_object_spilling_enabled", True):
        return "off"
    spill = getattr(_global_node, "_object_spilling_config", None)
    try:
        target = json.loads(spill)
        where = target.get("params", {}).get("directory_path") or target.get("type")
    except (TypeError, ValueError):
        where = "Ray's default location"
    return f"on (Ray default), to {where}"


def measure(input_dir: Path, dpi: int, cheap: bool, settings: list[str] = (), rows: str = "pixels") -> dict:
    """Child process: start Ray, run the job on ``input_dir``, return the figures."""
    import ray

    from configuration import load_config
    from pipeline.run import run_ocr

    ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=2, logging_level="ERROR")
    try:
        poller = StorePoller()
        rss_after_start = poller.process.memory_info().rss
        capacity = int(ray.cluster_resources().get("object_store_memory", 0))
        spilling = spilling_setting()
        overrides = [f"ocr.render.dpi={dpi}", "ocr.progress=false", "ocr.output.markdown=false"]
        if cheap:
            engine = CHEAP_LAYOUT + ("OfPdf" if rows == "pdf" else "")
            overrides += [f"ocr.layout.engine={engine}", "ocr.layout.options={}", "ocr.picture.enabled=false"]
        config = load_config(overrides=[*overrides, *settings])
        out = Path(tempfile.mkdtemp(prefix="bench-mem-out-"))
        poller.start()
        started = time.perf_counter()
        try:
            summary = run_ocr(config, [str(input_dir)], out, force=True)
        finally:
            seconds = time.perf_counter() - started
            poller.stop.set()
            poller.join()
            shutil.rmtree(out, ignore_errors=True)
        final = poller.sample()
    finally:
        ray.shutdown()
    return {
        "pages": summary.pages_total,
        "pages_failed": summary.pages_failed,
        "documents": summary.documents_written,
        "seconds": round(seconds, 1),
        "pages_per_s": round(summary.pages_total / seconds, 3),
        "driver_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "driver_peak_rss_sampled_mib": round(poller.peak_rss / 2**20, 1),
        "driver_rss_after_ray_start_mib": round(rss_after_start / 2**20, 1),
        "object_store_peak_mib": round(poller.peak_store / 2**20, 1),
        "object_store_capacity_mib": round(capacity / 2**20, 1),
        "store_samples": poller.samples,
        "spilled_mib": round(final.spilled_bytes_total / 2**20, 2),
        "spilled_objects": int(final.spilled_objects_total),
        "restored_mib": round(final.restored_bytes_total / 2**20, 2),
        "spilling": spilling,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", default="200,2000", help="comma-separated page counts (default 200,2000)")
    parser.add_argument("--pages-per-doc", type=int, default=20, help="pages per generated PDF")
    parser.add_argument("--dpi", type=int, default=72, help="rasterization DPI (low: this measures memory, not OCR)")
    parser.add_argument("--cheap", action="store_true", help="text-layer layout, no models, no OCR (same pipeline and rows)")
    parser.add_argument("--rows", choices=("pixels", "pdf"), default="pixels",
                        help="cheap mode: rows carry the rasterized page (as for DOTS; default) or the one-page PDF (as for PyMuPDF)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for the job (repeatable), e.g. ocr.page_block_bytes=134217728")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # child process: one size, one fresh Ray, one driver
        print(json.dumps(measure(args.worker, args.dpi, args.cheap, args.set, args.rows)))
        return

    sizes = [int(value) for value in args.pages.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    figures: dict[int, dict] = {}
    try:
        for pages in sizes:
            folder = work / f"in_{pages}"
            documents = make_inputs(folder, pages, args.pages_per_doc)
            print(f"{pages} pages in {documents} PDFs: running ...", file=sys.stderr, flush=True)
            command = [sys.executable, "-m", "bench.streaming_memory", "--worker", str(folder), "--dpi", str(args.dpi)]
            if args.cheap:
                command.append("--cheap")
            command += [arg for setting in args.set for arg in ("--set", setting)] + ["--rows", args.rows]
            # Ray swaps 127.0.0.1 for the machine's outward IP (and then listens on every interface)
            # unless this is 0: with it, the child's Ray really stays on 127.0.0.1.
            env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
            output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
            figures[pages] = json.loads(output.strip().splitlines()[-1])
            assert figures[pages]["pages"] == pages and figures[pages]["pages_failed"] == 0, figures[pages]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    columns = [
        ("pages", "pages"), ("seconds", "seconds"), ("pages/s", "pages_per_s"),
        ("driver peak RSS MiB", "driver_peak_rss_mib"), ("RSS after Ray start MiB", "driver_rss_after_ray_start_mib"),
        ("store peak MiB", "object_store_peak_mib"), ("store capacity MiB", "object_store_capacity_mib"),
        ("spilled MiB", "spilled_mib"), ("restored MiB", "restored_mib"),
    ]
    engines = "cheap mode: text-layer layout, no OCR" if args.cheap else "PyMuPDF layout + RapidOCR picture OCR"
    print(f"\nengines: {engines}, {args.dpi} dpi, "
          f"{args.pages_per_doc} pages per PDF, cpu count {os.cpu_count()}")
    print(" | ".join(title for title, _ in columns))
    for value in figures.values():
        print(" | ".join(str(value[key]) for _, key in columns))
    ratios = {}
    if len(sizes) >= 2:
        small, large = figures[min(sizes)], figures[max(sizes)]
        growth = lambda f: f["driver_peak_rss_mib"] - f["driver_rss_after_ray_start_mib"]
        ratios = {
            "pages": round(large["pages"] / small["pages"], 2),
            "driver_peak_rss": round(large["driver_peak_rss_mib"] / small["driver_peak_rss_mib"], 3),
            "driver_rss_growth": round(growth(large) / growth(small), 3) if growth(small) > 0 else None,
            "object_store_peak": round(large["object_store_peak_mib"] / small["object_store_peak_mib"], 3)
            if small["object_store_peak_mib"] else None,
        }
        print(f"\nratio {max(sizes)}/{min(sizes)} pages: {ratios['pages']}")
        print(f"  driver peak RSS:           {ratios['driver_peak_rss']}")
        print(f"  driver RSS growth in run:  {ratios['driver_rss_growth']}")
        print(f"  object store peak:         {ratios['object_store_peak']}")
    spilled = any(f["spilled_mib"] > 0 or f["spilled_objects"] > 0 for f in figures.values())
    print(f"object spilling: {next(iter(figures.values()))['spilling']}; spilled in these runs: {'yes' if spilled else 'no'}")
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "ratios": ratios, "spilled": spilled}, indent=2))


if __name__ == "__main__":
    main()
