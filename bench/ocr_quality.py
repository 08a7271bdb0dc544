"""OCR quality and speed: our RapidOCR engine against Tesseract 5 on the same page images.

    python -m bench.ocr_quality [--workload scanned|fonts] [--copies 3] [--dpi 150] [--repeats 1]
                                [--models ppocr-v6-tiny] [--rec-model F] [--stages] [--json out.json]
    python -m bench.ocr_quality --workload corpus [--corpus DIR] [--only NAME ...] [--no-job] [--job-copies N]
                                [--job-set 'KEY=VALUE ...'] [--json out.json]

Workloads, rendered at ``--dpi``:
* ``scanned`` (default): the pages of the generated scanned twin (``samples.generate``;
  image-only, so every word comes through OCR), ``--copies`` times over; the reference for
  each page is the born-digital text layer of the same page;
* ``fonts``: 16 pages, the same sentences in 8 PDF base-14 fonts at 9 and 11 pt
  (``bench/font_sheet.py``), against their own text layers: enough pages to choose models;
* ``corpus``: the project's LaTeX and office documents (``samples.corpus``), born-digital
  and scanned, through the layout engine and the OCR job against Tesseract, end to end
  (``bench/corpus_workload.py`` says what it measures; the rest of this text is about the
  other two workloads).

It prints, measured side by side in one run:
* CER (Levenshtein distance / reference length, summed over pages) after normalising
  both texts (``bench.scoring``: NFKC, which turns the reference's "ﬁ" ligature into "fi",
  line-end hyphens joined, single spaces);
* pages/s of OCR alone (rendering, PNG encoding and model loading are outside the timing;
  Tesseract reads all pages in one process from a list file, so it loads its model once);
* for RapidOCREngine on the ``--models`` set (default ``runtime: auto``: OpenVINO in bf16
  where the CPU has bf16) with keep_spaces on and off; on OpenVINO in f32 as the before-row
  of bf16; on onnxruntime ("onnxruntime": the rewritten graphs) as the before-row of OpenVINO, and with
  ``fast_graphs`` off there ("plain": RapidOCR's own onnxruntime sessions) as the before-row of the
  graph rewrites; with ``skip_blank`` off ("whole-page": detection over the whole page, blank
  paper included) as the before-row of content bands; with ``charset: latin`` ("latin": the
  recognizer's output layer cut to Latin-script classes, which is what Tesseract's ``eng``
  reads) on the default runtime and on onnxruntime; the ``ppocr-v4`` set as the before-row of the default model set; and
  Tesseract (``--psm 3``), first with one thread each (``threads=1``,
  ``OMP_THREAD_LIMIT=1``), then with each one's defaults;
* the ratios of our pages/s to Tesseract's, and the project goal: CER no worse than
  Tesseract's at >= 2x its pages/s.
* with ``--stages``: seconds per page of the whole OCR and of detection alone, one
  thread, ``skip_blank`` on and off (where a page's time goes).

Page 2's picture holds words that are pixels only (not in the text layer), so every
engine that reads them pays about 25 characters of CER there; the comparison stays fair.
Needs ``rapidfuzz`` (the ``bench`` extra) and, for the comparison, the ``tesseract`` CLI
(``apt-get install -y tesseract-ocr``); without it the Tesseract rows are skipped.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from bench.font_sheet import font_sheet
from bench.scoring import cer
from engines.rapidocr.engine import RapidOCREngine, restores_spaces
from engines.rapidocr.options import RapidOCROptions
from samples.generate import generate

GOAL_SPEEDUP = 2.0


@dataclass
class Result:
    """One engine configuration's figures over all pages."""

    engine: str
    threads: str
    cer: float
    page_cers: list[float]
    pages: int
    seconds: float
    pages_per_s: float
    note: str = ""
    sample: list[str] = field(default_factory=list)  # first page's text, for eyeballing


def render_rgb(page, dpi: int) -> np.ndarray:
    """One PDF page as an RGB array at ``dpi``."""
    import pymupdf

    pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csRGB, alpha=False)
    return np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width, 3).copy()


def load_pages(paths: dict[str, Path], dpi: int) -> tuple[list[np.ndarray], list[str]]:
    """Every scanned copy's pages as RGB arrays, and the born-digital text of each."""
    import pymupdf

    with pymupdf.open(paths["born_digital"]) as born:
        texts = [page.get_text() for page in born]
    images, references = [], []
    for name in sorted(key for key in paths if key.startswith("scanned")):
        with pymupdf.open(paths[name]) as scanned:
            for number, page in enumerate(scanned):
                images.append(render_rgb(page, dpi))
                references.append(texts[number])
    return images, references


def load_font_sheet(dpi: int) -> tuple[list[np.ndarray], list[str], list[str]]:
    """The font sheet's pages as RGB arrays, each page's own text, and the pages' labels."""
    import pymupdf

    pdf, labels = font_sheet()
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        return [render_rgb(page, dpi) for page in doc], [page.get_text() for page in doc], labels


def best_time(run: Callable[[], list[str]], repeats: int) -> tuple[list[str], float]:
    """Run ``repeats`` times; the texts of the last run and the fastest wall time."""
    seconds = float("inf")
    texts: list[str] = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        texts = run()
        seconds = min(seconds, time.perf_counter() - started)
    return texts, seconds


def bench_rapidocr(images: list[np.ndarray], references: list[str], options: RapidOCROptions,
                   repeats: int) -> Result:
    """Our engine, built once (model load untimed) and warmed up on one page."""
    import cv2

    engine = RapidOCREngine(options)
    threads = options.threads
    previous_cv2_threads = cv2.getNumThreads()
    if threads:
        cv2.setNumThreads(threads)  # OpenCV's resizes and warps share the same budget
    try:
        engine.read_lines(images[0])  # first inference allocates; keep it out of the timing

        def run() -> list[str]:
            return ["\n".join(line.text for line in engine.read_lines(image)) for image in images]

        texts, seconds = best_time(run, repeats)
    finally:
        cv2.setNumThreads(previous_cv2_threads)
    total, per_page = cer(texts, references)
    models = options.models + ("+files" if options.det_model or options.rec_model else "")
    runtime = (f" openvino {engine.precision}" if engine.runtime == "openvino"
               else " onnxruntime" + ("" if options.fast_graphs else " plain"))
    name = (f"rapidocr {models} spaces={'on' if engine.keep_spaces else 'off'}{runtime}"
            + ("" if options.skip_blank else " whole-page") + ("" if options.charset == "all" else f" {options.charset}"))
    return Result(name, str(threads or "default"), total, per_page, len(images), seconds,
                  len(images) / seconds, sample=texts[:1])


def tesseract_version() -> str | None:
    """The installed Tesseract's version line, or None when the CLI is missing."""
    if shutil.which("tesseract") is None:
        return None
    out = subprocess.run(["tesseract", "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else "tesseract"


def bench_tesseract(images: list[np.ndarray], references: list[str], threads: int, dpi: int,
                    repeats: int, workdir: Path) -> Result:
    """Tesseract CLI, ``--psm 3``, all pages in one process via a list file (model loaded once)."""
    import cv2

    listing = workdir / "pages.txt"
    if not listing.exists():  # PNG encoding is not OCR: done once, untimed
        names = []
        for i, image in enumerate(images):
            path = workdir / f"page_{i:04d}.png"
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            names.append(str(path))
        listing.write_text("\n".join(names) + "\n")
    env = dict(os.environ)
    if threads:
        env["OMP_THREAD_LIMIT"] = str(threads)
    else:
        env.pop("OMP_THREAD_LIMIT", None)
    command = ["tesseract", str(listing), "stdout", "--psm", "3", "--dpi", str(dpi)]

    def run() -> list[str]:
        out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        pages = out.stdout.split("\f")  # Tesseract ends every page with a form feed
        return (pages + [""] * len(images))[: len(images)]

    subprocess.run(["tesseract", str(workdir / "page_0000.png"), "stdout", "--psm", "3"],
                   capture_output=True, env=env, check=True)  # warm the file cache
    texts, seconds = best_time(run, repeats)
    total, per_page = cer(texts, references)
    return Result("tesseract --psm 3", str(threads or "default"), total, per_page, len(images), seconds,
                  len(images) / seconds, note="process start and model load inside the timing", sample=texts[:1])


def print_stages(images: list[np.ndarray], base: RapidOCROptions, repeats: int) -> None:
    """Seconds per page of the whole OCR and of detection alone, one thread, skip_blank on and off."""
    import cv2

    previous_cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        print("\nwhere a page's time goes, one thread (best of --repeats):")
        for skip_blank in (True, False):
            engine = RapidOCREngine(base.model_copy(update={"threads": 1, "skip_blank": skip_blank}))
            engine.read_lines(images[0])
            _, page = best_time(lambda engine=engine: [engine.read_lines(image) for image in images], repeats)
            _, detection = best_time(lambda engine=engine: [engine.detect(image) for image in images], repeats)
            pages = len(images)
            print(f"  skip_blank={str(skip_blank).lower():<5}  page {page / pages:.3f} s  detection {detection / pages:.3f} s"
                  f"  rest (recognition, crops) {(page - detection) / pages:.3f} s")
    finally:
        cv2.setNumThreads(previous_cv2_threads)


def print_table(results: list[Result], pages_per_copy: int) -> None:
    width = max(len(r.engine) for r in results)
    header = f"{'engine':<{width}} {'threads':>7} {'CER':>7}  {'CER per page (first copy)':<27} {'s/page':>7} {'pages/s':>8}"
    print(header)
    print("-" * len(header))
    for r in results:
        per_page = " ".join(f"{c:.4f}" for c in r.page_cers[:min(pages_per_copy, 3)])
        print(f"{r.engine:<{width}} {r.threads:>7} {r.cer:>7.4f}  {per_page:<27} {r.seconds / r.pages:>7.3f} {r.pages_per_s:>8.3f}")


def print_page_table(results: list[Result], labels: list[str]) -> None:
    """CER per page and engine (one-thread rows: the texts do not depend on threads)."""
    rows = [r for r in results if r.threads == "1"]
    print("\nCER per page, one thread: " + ", ".join(f"[{i}] {r.engine}" for i, r in enumerate(rows, 1)))
    print(f"{'page':<8}" + "".join(f" {f'[{i}]':>7}" for i in range(1, len(rows) + 1)))
    for i, label in enumerate(labels):
        print(f"{label:<8}" + "".join(f" {r.page_cers[i]:>7.4f}" for r in rows))


def ratios(results: list[Result]) -> list[dict[str, object]]:
    """Ours / Tesseract at the same thread setting, and whether the project goal is met."""
    out = []
    for ours in (r for r in results if r.engine.startswith("rapidocr")):
        tess = next((r for r in results if r.engine.startswith("tesseract") and r.threads == ours.threads), None)
        if tess is None:
            continue
        speedup = ours.pages_per_s / tess.pages_per_s
        out.append({
            "ours": ours.engine, "threads": ours.threads, "speedup": round(speedup, 3),
            "cer_ours": round(ours.cer, 4), "cer_tesseract": round(tess.cer, 4),
            "goal_met": bool(ours.cer <= tess.cer and speedup >= GOAL_SPEEDUP),
        })
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("scanned", "fonts", "corpus"), default="scanned",
                        help="scanned: the scanned sample's 2 pages x --copies; fonts: 16 pages, 8 fonts x 2 sizes"
                        " (bench/font_sheet.py); corpus: the LaTeX and office corpus, born-digital, scanned and"
                        " end to end (bench/corpus_workload.py)")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="corpus: a folder built by python -m samples.corpus.build (default: build one now)")
    parser.add_argument("--only", nargs="*", default=None, help="corpus: these documents only")
    parser.add_argument("--no-job", dest="job", action="store_false",
                        help="corpus: leave out the end-to-end run of the OCR job")
    parser.add_argument("--copies", type=int, default=1, help="scanned copies to OCR (2 pages each)")
    parser.add_argument("--job-copies", type=int, default=1,
                        help="corpus: the end-to-end run reads this many copies of the scanned documents (a larger"
                        " collection, over which start-up weighs less)")
    parser.add_argument("--job-set", action="append", default=[], metavar="'KEY=VALUE ...'",
                        help="corpus: also run the job with these --set overrides (space-separated; repeatable: one run"
                        " each), next to the default config")
    parser.add_argument("--job-one-file", action="store_true",
                        help="corpus: the end-to-end run gives the job all the scanned pages as one PDF (a long document)")
    parser.add_argument("--dpi", type=int, default=150, help="render resolution of the pages")
    parser.add_argument("--tilt", type=float, default=0.0,
                        help="corpus: the scans tilted this many degrees counter-clockwise, as a feeder tilts a sheet")
    parser.add_argument("--worn", action="store_true",
                        help="corpus: the scans blurred, noisy, on grey paper and stored as JPEG, as an office scanner delivers them")
    parser.add_argument("--turn", type=int, default=0, choices=(0, 90, 180, 270),
                        help="corpus: the scans laid turned this many degrees clockwise, as sheets fed sideways or upside down"
                        " (Tesseract then runs with --psm 1, its orientation detection)")
    parser.add_argument("--bilevel", type=int, default=0, metavar="LEVEL",
                        help="corpus: the scans in black and white, grey levels up to LEVEL black, stored as CCITT Group 4"
                        " (a document scanner's text mode; use with --dpi 300)")
    parser.add_argument("--outlined", action="store_true",
                        help="corpus: instead of scans, the PDFs with their text converted to outlines (Ghostscript), no text layer")
    parser.add_argument("--stamped", action="store_true",
                        help="corpus: a download footer written as text on every scan, as journal archives stamp them")
    parser.add_argument("--repeats", type=int, default=1, help="time each configuration this often, keep the fastest")
    parser.add_argument("--models", default=RapidOCROptions().models, help="RapidOCROptions.models (the model set)")
    parser.add_argument("--max-side-len", type=int, default=RapidOCROptions().max_side_len,
                        help="RapidOCROptions.max_side_len (detection size; default: the engine's)")
    parser.add_argument("--det-model", type=Path, default=None, help="RapidOCROptions.det_model (default: the set's)")
    parser.add_argument("--rec-model", type=Path, default=None, help="RapidOCROptions.rec_model (default: the set's)")
    parser.add_argument("--rec-keys", type=Path, default=None, help="RapidOCROptions.rec_keys")
    parser.add_argument("--rec-height", type=int, default=RapidOCROptions().rec_height,
                        help="RapidOCROptions.rec_height")
    parser.add_argument("--stages", action="store_true",
                        help="also print seconds per page of detection and of the rest, skip_blank on and off")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.workload == "corpus":
        from bench.corpus_workload import Rescan
        from bench.corpus_workload import main as corpus_main

        return corpus_main(args.corpus, args.only, args.dpi, args.job, args.json, args.stages, args.job_copies, args.job_set,
                           Rescan(args.tilt, args.worn, args.turn, args.bilevel, args.stamped, args.outlined),
                           args.job_one_file)
    base = RapidOCROptions(models=args.models, max_side_len=args.max_side_len, det_model=args.det_model,
                           rec_model=args.rec_model, rec_keys=args.rec_keys, rec_height=args.rec_height)
    variants = [{}, {"runtime": "openvino", "precision": "f32"}, {"runtime": "onnxruntime"},  # defaults, before-rows
                {"runtime": "onnxruntime", "fast_graphs": False},
                {"keep_spaces": not restores_spaces(base)},  # spaces as the model set needs, then flipped
                {"skip_blank": False},  # detection on the whole page
                {"charset": "latin"}, {"charset": "latin", "runtime": "onnxruntime"}]  # output layer cut (Tesseract's eng: Latin too)
    if base.models != "ppocr-v4" and not (base.det_model or base.rec_model):  # the first model set
        variants.append({"models": "ppocr-v4"})

    with tempfile.TemporaryDirectory(prefix="ocr_quality_") as tmp:
        if args.workload == "fonts":
            images, references, labels = load_font_sheet(args.dpi)
            pages_per_copy, described = len(images), f"{len(images)} font-sheet pages"
        else:
            paths = generate(Path(tmp) / "samples", copies=max(1, args.copies))
            images, references = load_pages(paths, args.dpi)
            pages_per_copy = len(images) // max(1, args.copies)
            labels, described = [], f"{len(images)} scanned pages ({args.copies} copies x {pages_per_copy})"
        version = tesseract_version()
        print(f"{described} at {args.dpi} dpi, {os.cpu_count()} CPUs, tesseract: {version or 'NOT FOUND'}\n")
        if version is None:
            print("tesseract is missing (apt-get install -y tesseract-ocr): its rows and the ratios are skipped.\n")
        results: list[Result] = []
        for threads in (1, 0):
            for variant in variants:
                options = base.model_copy(update={"threads": threads, **variant})
                results.append(bench_rapidocr(images, references, options, args.repeats))
            if version is not None:
                results.append(bench_tesseract(images, references, threads, args.dpi, args.repeats, Path(tmp)))

    print_table(results, pages_per_copy)
    if args.stages:
        print_stages(images, base, args.repeats)
    if labels:
        print_page_table(results, labels)
    compared = ratios(results)
    if compared:
        print(f"\nours / tesseract pages/s (goal: CER <= tesseract's at >= {GOAL_SPEEDUP:g}x):")
        for row in compared:
            print(f"  {row['ours']:<40} threads={row['threads']:<8} {row['speedup']:.2f}x  "
                  f"CER {row['cer_ours']:.4f} vs {row['cer_tesseract']:.4f}  goal {'met' if row['goal_met'] else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps({
            "workload": args.workload, "pages": len(images), "copies": args.copies, "dpi": args.dpi, "repeats": args.repeats,
            "options": base.model_dump(mode="json"), "cpus": os.cpu_count(), "tesseract": version,
            "results": [asdict(r) for r in results], "ratios": compared,
        }, indent=2, ensure_ascii=False))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
