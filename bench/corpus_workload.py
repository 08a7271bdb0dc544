"""The ``corpus`` workload of ``bench.ocr_quality``: the project's own LaTeX and office documents, side by side.

    python -m bench.ocr_quality --workload corpus [--corpus DIR] [--only NAME ...] [--dpi 150] [--no-job]
                                [--job-copies N] [--job-set 'KEY=VALUE ...'] [--job-one-file] [--tilt DEGREES] [--worn]
                                [--turn 90|180|270] [--bilevel LEVEL] [--stamped] [--outlined]

The corpus (``samples.corpus.build``: pdfTeX and LuaTeX papers in one and two columns,
a manual, a LibreOffice export) is built into a temporary folder unless ``--corpus``
names a built one. Each page's reference is its born-digital PDF's text layer
(``page.get_text()``). Three parts, measured in one run:

1. born-digital: the layout engine's text on the PDFs against their text layers, CER and
   word recall per producer (goal: CER < 1 %, word recall >= 99 %);
2. scanned, engine against engine on one thread each: the layout engine (OCR text layer,
   layout, reading order) and Tesseract ``--psm 3`` (a process per document) on the
   scanned twins' pages at ``--dpi``, document by document in turn, with CER, word recall
   and pages/s (goal: CER no worse than Tesseract's);
3. end to end: the OCR job as a user runs it (``python -m jobs.ocr SCANNED.pdf... --out OUT``,
   its own local Ray, default config), wall time from the command's start to its exit,
   against Tesseract on the same cores, one single-thread process per core, each page its
   own work item, the PNG files written beforehand outside its timing, run before and after
   the job, the faster run counting (goal: >= 2x its pages/s). ``--job-copies N`` makes
   both read N copies of the scanned documents (a collection over which the job's start-up
   weighs less); each ``--job-set "KEY=VALUE ..."`` adds a run of the job with those
   overrides (for example two layout actors on a 2-core machine) next to the default config.
   ``--job-one-file`` gives the job all those pages as one PDF (a long scanned document,
   whose pages the job must spread over its actors itself); Tesseract reads the same pages.

``--tilt D`` reads scans tilted by D degrees (each page turned around its centre, as a
sheet feeder tilts it; ``samples.corpus.build.scanned_twin``) in parts 2 and 3, against
the same text layers: real scans are rarely level, and Tesseract deskews. ``--worn`` reads
them as an office scanner delivers them: blurred, on grey paper, with sensor noise, stored
as JPEG at quality 70. ``--turn 90|180|270`` lays every scan turned that many degrees
clockwise, on a page of the turned size, as sheets fed sideways or upside down come out;
Tesseract then runs with ``--psm 1``, its own page orientation detection (OSD).
``--bilevel LEVEL`` stores the scans in black and white (grey levels up to LEVEL black) as
CCITT Group 4 images, as document scanners' text mode and archives do; usually with
``--dpi 300``, their resolution for text. ``--stamped`` writes a download footer as text
on every scan, as journal archives do: the pages then have a text layer of a few words
(its words are scored as extra: the reference is the born-digital page's text).
``--outlined`` reads, instead of scans, the born-digital PDFs with their text converted to
outlines by Ghostscript (as print-ready PDFs are: vector glyphs, no text layer); the
engine OCRs their renderings, Tesseract reads the same renderings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.scoring import cer, elements_text, word_recall

GOAL_BORN_CER, GOAL_BORN_RECALL, GOAL_SPEEDUP = 0.01, 0.99, 2.0


@dataclass
class Scored:
    """Texts of one engine on a set of pages, scored, with the wall time it took."""

    name: str
    texts: list[str]
    references: list[str]
    seconds: float = 0.0

    @property
    def cer(self) -> float:
        return cer(self.texts, self.references)[0]

    @property
    def recall(self) -> float:
        return word_recall(self.texts, self.references)

    @property
    def pages_per_s(self) -> float:
        return len(self.texts) / self.seconds if self.seconds else float("nan")

    def row(self) -> dict[str, object]:
        return {"name": self.name, "pages": len(self.texts), "cer": round(self.cer, 5), "word_recall": round(self.recall, 5),
                "seconds": round(self.seconds, 2), "pages_per_s": round(self.pages_per_s, 3)}


def producer_family(producer: str) -> str:
    """pdfTeX, LuaTeX, LibreOffice...: the producer string without its version."""
    return producer.split("-")[0].split(" ")[0] or "unknown"


def corpus_documents(corpus: Path | None, only: list[str] | None, dpi: int, tmp: Path) -> tuple[Path, list[dict]]:
    """The built corpus (``corpus.json`` entries), building it into ``tmp`` when ``corpus`` is None."""
    from samples.corpus.build import build_corpus

    if corpus is None:
        corpus = tmp / "corpus"
        build_corpus(corpus, only, (dpi,), log=lambda line: print(f"  {line}", flush=True))
    built = json.loads((corpus / "corpus.json").read_text())
    built = [b for b in built if not only or b["name"] in only]
    missing = [b["name"] for b in built if str(dpi) not in b["scanned"]]
    if missing:
        raise SystemExit(f"{corpus} has no {dpi} dpi scans of {missing}: rebuild with --dpi {dpi}")
    return corpus, built


@dataclass(frozen=True)
class Rescan:
    """How the scans are redone: tilted ``tilt`` degrees counter-clockwise, ``worn`` (blurred, noisy, JPEG-stored as
    an office scanner delivers them), laid ``turn`` degrees clockwise, in black and white at the grey level
    ``bilevel`` (CCITT Group 4), ``stamped`` with a download footer as text (``samples.corpus.build.scanned_twin``);
    or no scan at all: the born-digital PDF with its text ``outlined`` (``samples.corpus.build.outlined_twin``)."""

    tilt: float = 0.0
    worn: bool = False
    turn: int = 0
    bilevel: int = 0
    stamped: bool = False
    outlined: bool = False

    def __post_init__(self) -> None:
        if self.outlined and self.changes_the_scan:
            raise ValueError("outlined text is not a scan: it takes no tilt, wear, turn, bilevel or stamp")

    @property
    def changes_the_scan(self) -> bool:
        return bool(self.tilt or self.worn or self.turn % 360 or self.bilevel or self.stamped)

    def __bool__(self) -> bool:
        return self.changes_the_scan or self.outlined

    @property
    def label(self) -> str:
        return (f"{f', tilted {self.tilt:g} degrees' if self.tilt else ''}{', worn' if self.worn else ''}"
                f"{f', turned {self.turn} degrees' if self.turn % 360 else ''}"
                f"{f', black and white at grey level {self.bilevel} (CCITT G4)' if self.bilevel else ''}"
                f"{', a download footer stamped on as text' if self.stamped else ''}"
                f"{', not scans: the PDFs with their text converted to outlines (Ghostscript)' if self.outlined else ''}")

    @property
    def tesseract_psm(self) -> str:
        """``--psm 1`` (orientation and script detection first) where pages lie turned, else the usual ``--psm 3``."""
        return "1" if self.turn % 360 else "3"


def rescanned(built: list[dict], dpi: int, rescan: Rescan, folder: Path) -> list[dict]:
    """``built`` with its scans at ``dpi`` replaced by twins redone as ``rescan`` says, written to ``folder``."""
    from samples.corpus.build import DOWNLOAD_FOOTER, outlined_twin, scanned_twin

    scans = []
    for doc in built:
        path = folder / f"{doc['name']}.pdf"
        if rescan.outlined:
            outlined_twin(Path(doc["pdf"]), path)
        else:
            scanned_twin(Path(doc["pdf"]), path, dpi, tilt=rescan.tilt, worn=rescan.worn, turn=rescan.turn,
                         bilevel=rescan.bilevel, stamp=DOWNLOAD_FOOTER if rescan.stamped else "")
        scans.append({**doc, "scanned": {**doc["scanned"], str(dpi): str(path)}})
    return scans


def references(pdf: str) -> list[str]:
    import pymupdf

    with pymupdf.open(pdf) as doc:
        return [page.get_text() for page in doc]


def page_images(pdf: str, dpi: int, max_pages: int | None = None):
    """The engine's input pages of ``pdf`` (its first ``max_pages``), as the job splits them (PDF bytes and pixels at ``dpi``)."""
    from documents.pages import SplitLimits, split_pages
    from engines.base import PageImage, PageMeta

    _, _, rendered = split_pages(Path(pdf).read_bytes(), "pdf", SplitLimits(dpi=dpi, max_pages=max_pages))
    name = Path(pdf).name
    return [PageImage(page.image(), PageMeta(name, name, page.page_number, page.width, page.height, page.scale,
                                             page.pdf_bytes, page.has_text_layer)) for page in rendered]


def layout_engine(threads: int = 1, gutters: bool = True):
    from engines.pymupdf_layout import PyMuPDFLayoutEngine, PyMuPDFLayoutOptions
    from engines.rapidocr.options import RapidOCROptions

    ocr = RapidOCROptions(threads=threads, split_gutters=gutters)
    return PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(threads=threads, rapidocr=ocr))


def read_with_engine(engine, pages: list) -> tuple[list[str], float]:
    started = time.perf_counter()
    texts = [elements_text(engine.layout([page])[0].elements) for page in pages]
    return texts, time.perf_counter() - started


def born_digital(built: list[dict], dpi: int) -> tuple[dict[str, Scored], dict[str, Scored]]:
    """The layout engine on the born-digital PDFs: scores per document and per producer family."""
    engine = layout_engine()
    per_document, per_producer = {}, {}
    for doc in built:
        texts, seconds = read_with_engine(engine, page_images(doc["pdf"], dpi))
        scored = Scored(doc["name"], texts, references(doc["pdf"]), seconds)
        per_document[doc["name"]] = scored
        family = per_producer.setdefault(producer_family(doc["producer"]), Scored(producer_family(doc["producer"]), [], []))
        family.texts += scored.texts
        family.references += scored.references
        family.seconds += seconds
    return per_document, per_producer


def tesseract_pngs(built: list[dict], dpi: int, folder: Path) -> list[Path]:
    """Every scanned page as a grey PNG at ``dpi`` (what the job's split renders), in corpus order."""
    import pymupdf

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc in built:
        with pymupdf.open(doc["scanned"][str(dpi)]) as scanned:
            for number, page in enumerate(scanned):
                path = folder / f"{doc['name']}-{number:03d}.png"
                page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY).save(path)
                paths.append(path)
    return paths


def _tesseract_env() -> dict[str, str]:
    return {**os.environ, "OMP_THREAD_LIMIT": "1"}


def tesseract_one_process(pngs: list[Path], dpi: int, folder: Path, psm: str = "3") -> tuple[list[str], float]:
    """Tesseract on one thread, all pages in one process (its model loaded once)."""
    listing = folder / "pages.txt"
    listing.write_text("\n".join(str(p) for p in pngs) + "\n")
    command = ["tesseract", str(listing), "stdout", "--psm", psm, "--dpi", str(dpi)]
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=_tesseract_env(), check=True).stdout
    seconds = time.perf_counter() - started
    return (out.split("\f") + [""] * len(pngs))[: len(pngs)], seconds


def tesseract_per_core(pngs: list[Path], dpi: int, cores: int, psm: str = "3") -> tuple[list[str], float]:
    """Tesseract as a batch tool runs on a machine: ``cores`` single-thread processes, one page per process."""
    def one(path: Path) -> str:
        command = ["tesseract", str(path), "stdout", "--psm", psm, "--dpi", str(dpi)]
        return subprocess.run(command, capture_output=True, text=True, env=_tesseract_env(), check=True).stdout

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=cores) as pool:
        texts = list(pool.map(one, pngs))
    return texts, time.perf_counter() - started


def run_job(inputs: list[str], dpi: int, out: Path, overrides: list[str] = ()) -> tuple[dict[str, list[str]], float, dict]:
    """The OCR job as a user runs it (with ``--set`` ``overrides``); each document's page texts, the command's wall
    time and its summary."""
    command = [sys.executable, "-m", "jobs.ocr", *inputs, "--out", str(out), "--dpi", str(dpi),
               "--set", "ocr.progress=false", *(arg for item in overrides for arg in ("--set", item))]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"the OCR job failed ({result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")
    texts = {}
    for report in out.glob("*.json"):
        data = json.loads(report.read_text())
        if "pages" in data and "source_path" in data:
            pages = sorted(data["pages"], key=lambda page: page["page_number"])
            texts[Path(data["source_path"]).stem] = [elements_text(page["ocr_pass_result"]) for page in pages]
    return texts, seconds, json.loads((out / "summary.json").read_text())


def print_stages(pages: list, engine) -> None:
    """Seconds per scanned page, one thread: detection, the whole OCR, the whole layout engine (the rest:
    writing the OCR text layer, layout analysis, words to elements), and the engine without ``split_gutters``."""
    import numpy as np

    images = [np.asarray(page.image) for page in pages]
    timed: dict[str, float] = {}

    def clock(name: str, run) -> None:
        started = time.perf_counter()
        run()
        timed[name] = (time.perf_counter() - started) / len(pages)

    clock("detection", lambda: [engine.ocr.detect(image) for image in images])
    clock("OCR (detection, gutters, recognition)", lambda: [engine.ocr.read_lines(image) for image in images])
    clock("layout engine, all of it", lambda: engine.layout(pages))
    plain = layout_engine(gutters=False)
    plain.layout(pages[:1])
    clock("layout engine, split_gutters off", lambda: plain.layout(pages))
    print("\n   where a scanned page's time goes, one thread, seconds per page:")
    for name, seconds in timed.items():
        print(f"     {name:<40} {seconds:.3f}")
    rest = timed["layout engine, all of it"] - timed["OCR (detection, gutters, recognition)"]
    print(f"     {'rest (text layer, layout analysis, words)':<40} {rest:.3f}")


#: The one file ``--job-one-file`` makes of the scans (``job_inputs``).
ONE_FILE = "collection"


def job_inputs(built: list[dict], dpi: int, copies: int, folder: Path, one_file: bool = False) -> list[str]:
    """The scanned documents, or ``copies`` copies of each (files named ``STEM--K.pdf``; links would be read as
    one document) in ``folder``; with ``one_file``, all those pages in that order in one PDF (``ONE_FILE``)."""
    if one_file:
        import pymupdf

        folder.mkdir(parents=True, exist_ok=True)
        with pymupdf.open() as merged:
            for _ in range(copies):
                for doc in built:
                    with pymupdf.open(doc["scanned"][str(dpi)]) as scan:
                        merged.insert_pdf(scan)
            merged.save(folder / f"{ONE_FILE}.pdf")
        return [str(folder / f"{ONE_FILE}.pdf")]
    if copies <= 1:
        return [doc["scanned"][str(dpi)] for doc in built]
    folder.mkdir(parents=True, exist_ok=True)
    inputs = []
    for copy in range(copies):
        for doc in built:
            path = folder / f"{doc['name']}--{copy}.pdf"
            shutil.copyfile(doc["scanned"][str(dpi)], path)
            inputs.append(str(path))
    return inputs


def end_to_end(built: list[dict], dpi: int, cores: int, pngs: list[Path], refs: list[str], tmp: Path,
               version: str | None, copies: int, job_sets: list[str], psm: str = "3", one_file: bool = False) -> dict[str, object]:
    """Part 3: the OCR job (default config, then with each ``job_sets`` entry's space-separated overrides) against
    Tesseract a page per process; with ``one_file`` the job reads all the pages as one PDF."""
    pngs, refs = pngs * copies, refs * copies
    inputs = job_inputs(built, dpi, copies, tmp / "job-in", one_file)
    before = tesseract_per_core(pngs, dpi, cores, psm) if version else None
    rows, summaries = [], []
    for number, overrides in enumerate([[]] + [item.split() for item in job_sets]):
        job_texts, job_seconds, summary = run_job(inputs, dpi, tmp / f"job-out-{number}", overrides)
        if one_file:
            ordered = job_texts.get(ONE_FILE) or [""] * len(refs)
        else:
            ordered = [text for copy in range(copies) for doc in built
                       for text in (job_texts.get(doc["name"] if copies == 1 else f"{doc['name']}--{copy}") or [""] * doc["pages"])]
        label = f"OCR job (python -m jobs.ocr{''.join(' --set ' + item for item in overrides)}), {cores} cores"
        rows.append(Scored(label, ordered, refs, job_seconds))
        summaries.append(summary)
    if version:  # before and after the jobs; the faster run counts (the machine drifts over minutes)
        runs = [before, tesseract_per_core(pngs, dpi, cores, psm)]
        texts, seconds = min(runs, key=lambda run: run[1])
        rows.append(Scored(f"tesseract, {cores} single-thread processes, a page each", texts, refs, seconds))
    read_as = f"{f' ({copies} copies)' if copies > 1 else ''}{', as one PDF' if one_file else ''}"
    _print_rows(f"3. end to end on the scanned twins{read_as} (start-up included)", rows)
    figures: dict[str, object] = {"copies": copies, "rows": [r.row() for r in rows], "job_summaries": summaries}
    if version:
        print(f"   tesseract before and after the jobs: {runs[0][1]:.1f} s and {runs[1][1]:.1f} s")
    for row, summary in zip(rows, summaries):
        after = summary.get("pages_per_second_after_first_document")
        print(f"   {row.name}: its summary says {summary.get('wall_seconds')} s of the command's {row.seconds:.1f} s,"
              f" first document after {summary.get('first_document_seconds')} s, {after} pages/s from then on")
    if version:
        tesseract = rows[-1]
        speedups = [round(row.pages_per_s / tesseract.pages_per_s, 3) for row in rows[:-1]]
        met = speedups[0] >= GOAL_SPEEDUP and rows[0].cer <= tesseract.cer
        print(f"   job / tesseract pages/s: {', '.join(f'{x:.2f}x' for x in speedups)}; CER {rows[0].cer:.4f} vs"
              f" {tesseract.cer:.4f}: goal (default config >= {GOAL_SPEEDUP:g}x, CER no worse) {'met' if met else 'NOT met'}")
        figures.update(speedups=speedups, goal_met=met)
    return figures


def _print_rows(title: str, rows: list[Scored], speed: bool = True) -> None:
    print(f"\n{title}")
    width = max(len(r.name) for r in rows)
    print(f"  {'':<{width}} {'pages':>5} {'CER':>7} {'word recall':>11}" + (f" {'s':>7} {'pages/s':>8}" if speed else ""))
    for r in rows:
        print(f"  {r.name:<{width}} {len(r.texts):>5} {r.cer:>7.4f} {r.recall:>11.4f}"
              + (f" {r.seconds:>7.1f} {r.pages_per_s:>8.3f}" if speed else ""))


def main(corpus: Path | None, only: list[str] | None, dpi: int, job: bool, json_path: Path | None,
         stages: bool = False, job_copies: int = 1, job_sets: list[str] = (), rescan: Rescan = Rescan(),
         job_one_file: bool = False) -> int:
    from bench.ocr_quality import tesseract_version

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    version = tesseract_version()
    with tempfile.TemporaryDirectory(prefix="ocr_corpus_") as tmp_name:
        tmp = Path(tmp_name)
        corpus, built = corpus_documents(corpus, only, dpi, tmp)
        if rescan:
            built = rescanned(built, dpi, rescan, tmp / "rescanned")
        pages = sum(doc["pages"] for doc in built)
        print(f"corpus {corpus}: {len(built)} documents, {pages} pages; scans at {dpi} dpi"
              f"{rescan.label}; {cores} cores;"
              f" tesseract: {version or 'NOT FOUND'}", flush=True)
        figures: dict[str, object] = {"dpi": dpi, **asdict(rescan),
                                      "cores": cores, "tesseract": version, "documents": built}

        per_document, per_producer = born_digital(built, dpi)
        _print_rows("1. born-digital: layout engine text against the PDF's own text layer (get_text())",
                    list(per_document.values()), speed=False)
        _print_rows("   per producer", list(per_producer.values()), speed=False)
        born_met = all(s.cer < GOAL_BORN_CER and s.recall >= GOAL_BORN_RECALL for s in per_producer.values())
        print(f"   goal CER < {GOAL_BORN_CER:.0%} and word recall >= {GOAL_BORN_RECALL:.0%} for every producer:"
              f" {'met' if born_met else 'NOT met'}")
        figures["born_digital"] = {"documents": [s.row() for s in per_document.values()],
                                   "producers": [s.row() for s in per_producer.values()], "goal_met": born_met}

        refs = [text for doc in built for text in references(doc["pdf"])]
        engine = layout_engine()
        scanned = {doc["name"]: page_images(doc["scanned"][str(dpi)], dpi) for doc in built}
        scanned_pages = [page for doc in built for page in scanned[doc["name"]]]
        engine.layout(scanned_pages[:1])  # models loaded and warmed up outside the timing
        pngs = tesseract_pngs(built, dpi, tmp / "png") if version else []
        ours = Scored("layout engine (RapidOCR + layout), 1 thread", [], refs)
        tess = Scored(f"tesseract --psm {rescan.tesseract_psm}, 1 thread, a process per document", [], refs)
        start = 0
        for doc in built:  # interleaved document by document: the machine's drift hits both alike
            texts, seconds = read_with_engine(engine, scanned[doc["name"]])
            ours.texts += texts
            ours.seconds += seconds
            if version:
                texts, seconds = tesseract_one_process(pngs[start:start + len(texts)], dpi, tmp, rescan.tesseract_psm)
                tess.texts += texts
                tess.seconds += seconds
            start += len(texts)
        rows = [ours] + ([tess] if version else [])
        _print_rows(f"2. scanned at {dpi} dpi, engine against engine (models loaded outside the timing)", rows)
        figures["scanned_engine"] = [r.row() for r in rows]
        if version:
            cer_met = ours.cer <= tess.cer
            print(f"   CER {ours.cer:.4f} vs Tesseract's {tess.cer:.4f}: goal (no worse) {'met' if cer_met else 'NOT met'};"
                  f" pages/s {ours.pages_per_s / tess.pages_per_s:.2f}x Tesseract's")
            figures["scanned_cer_goal_met"] = cer_met
        if stages:
            print_stages(scanned_pages, engine)

        if job:
            figures["end_to_end"] = end_to_end(built, dpi, cores, pngs, refs, tmp, version, job_copies, job_sets,
                                               rescan.tesseract_psm, job_one_file)
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2, ensure_ascii=False))
        print(f"\nwrote {json_path}")
    return 0

