"""Born-digital text on PDFs that other people made: the layout engine against each page's own text layer.

    python -m bench.published_pdfs [FOLDER ...] [--docs 250] [--pages 3] [--seed 7] [--worst 20]
                                   [--scanned] [--dpi 150] [--turn 90|180|270] [--json OUT]

The corpus of ``bench.ocr_quality`` is typeset by this project; this bench reads what
others published. By default the folder is ``/usr/share/doc``, where Debian's TeX Live
packages put several hundred package manuals, letters, slides and test documents typeset
by pdfTeX, LuaTeX, XeTeX (xdvipdfmx), Ghostscript and others, none of them written here. ``--docs``
PDFs are drawn at random (``--seed``), their first ``--pages`` pages read one at a time
by the layout engine (one thread, models loaded) and scored against MuPDF's
``page.get_text()``: CER (which counts reading-order differences as edits), the CER of
the words sorted ("unordered": what is read wrong, dropped or added) and word recall,
per producer and overall. Pages whose text layer has fewer than
50 characters are left out: their words are pictures (slides drawn as images, barcodes),
which the engine reads through OCR and the text layer does not have. The worst pages are
listed, to look at: on these documents they are mostly order differences where the text
layer's own order is one of several right ones (a table of commands read row by row or
column by column, marginal notes).

``--scanned`` also reads the same pages as scans: each rendered in grey at ``--dpi`` into
an image-only PDF (no text layer, so every word comes through OCR), read by the layout
engine and by Tesseract 5 (``--psm 3``, one thread, a process per document, on the same
grey page images), document by document in turn, scored against the same text layers.
``--turn D`` lays those scans turned D degrees clockwise on pages of the turned size (PIL's
rotation), as sheets fed sideways or upside down come out; Tesseract then runs with
``--psm 1``, its own orientation detection.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.corpus_workload import Rescan, Scored, layout_engine, page_images, producer_family, tesseract_one_process
from bench.scoring import cer, elements_text, unordered_cer

MIN_REFERENCE_CHARS = 50


@dataclass
class Document:
    """The pages of one published PDF that have a text layer: their numbers (from 1) and text layers."""

    pdf: Path
    producer: str
    numbers: list[int] = field(default_factory=list)
    references: list[str] = field(default_factory=list)


def published_pdfs(folders: list[Path], docs: int, seed: int) -> list[Path]:
    """``docs`` PDFs drawn at random (``seed``) from under ``folders``."""
    paths = sorted({path.resolve() for folder in folders for path in folder.rglob("*.pdf") if path.is_file()})
    random.Random(seed).shuffle(paths)
    return paths[:docs]


def text_pages(pdf: Path, pages: int) -> Document:
    """The first ``pages`` pages of ``pdf`` whose text layer has words (``MIN_REFERENCE_CHARS``)."""
    import pymupdf

    with pymupdf.open(pdf) as doc:
        document = Document(pdf, (doc.metadata or {}).get("producer", "") or "")
        for index in range(min(pages, len(doc))):
            text = doc[index].get_text()
            if len(text.strip()) >= MIN_REFERENCE_CHARS:
                document.numbers.append(index + 1)
                document.references.append(text)
    return document


def read(engine, pdf: Path, numbers: list[int], pages: int, dpi: int = 150) -> tuple[list[str], float]:
    """The engine's text of pages ``numbers`` of ``pdf`` (of its first ``pages``, split at ``dpi`` as the job splits
    them), one page per call, and the seconds."""
    inputs = page_images(str(pdf), dpi, pages)
    started = time.perf_counter()
    texts = [elements_text(engine.layout([inputs[number - 1]])[0].elements) for number in numbers]
    return texts, time.perf_counter() - started


def scan(document: Document, dpi: int, folder: Path, turn: int = 0) -> tuple[Path, list[Path]]:
    """The document's text pages as a scan: an image-only PDF of them, and the same pages as grey PNGs (Tesseract's
    input), laid turned ``turn`` degrees clockwise."""
    import pymupdf
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    pngs = []
    with pymupdf.open(document.pdf) as source, pymupdf.open() as out:
        for number in document.numbers:
            page = source[number - 1]
            png = folder / f"page-{number:04d}.png"
            page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY, alpha=False).save(png)
            if turn:
                Image.open(png).rotate(-turn, expand=True).save(png)  # PIL turns counter-clockwise
            pngs.append(png)
            width, height = (page.rect.height, page.rect.width) if turn % 180 else (page.rect.width, page.rect.height)
            out.new_page(width=width, height=height).insert_image(pymupdf.Rect(0, 0, width, height), filename=png)
        out.save(folder / "scan.pdf")
    return folder / "scan.pdf", pngs


def _add(scored: Scored, texts: list[str], references: list[str], seconds: float) -> None:
    scored.texts += texts
    scored.references += references
    scored.seconds += seconds


def _print_table(title: str, rows: list[Scored]) -> None:
    print(f"\n{title}")
    print(f"  {'':<28} {'pages':>6} {'CER':>8} {'unordered':>9} {'recall':>8} {'pages/s':>8}")
    for scored in rows:
        print(f"  {scored.name:<28} {len(scored.texts):>6} {scored.cer:>8.4f} {unordered_cer(scored.texts, scored.references):>9.4f} "
              f"{scored.recall:>8.4f} {scored.pages_per_s:>8.2f}")


def add_sample_arguments(parser: argparse.ArgumentParser, docs: int, pages: int, seed: int) -> None:
    """The arguments that pick the published PDFs (``published_pdfs``) and their pages, with these defaults."""
    parser.add_argument("folders", nargs="*", type=Path, default=[Path("/usr/share/doc")])
    parser.add_argument("--docs", type=int, default=docs, help="PDFs drawn at random")
    parser.add_argument("--pages", type=int, default=pages, help="first pages of each")
    parser.add_argument("--seed", type=int, default=seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sample_arguments(parser, docs=250, pages=3, seed=7)
    parser.add_argument("--worst", type=int, default=20, help="pages with the highest CER to list")
    parser.add_argument("--scanned", action="store_true", help="also read the pages as scans, against Tesseract")
    parser.add_argument("--dpi", type=int, default=150, help="--scanned: the scans' resolution")
    parser.add_argument("--turn", type=int, default=0, choices=(0, 90, 180, 270),
                        help="--scanned: the scans laid turned this many degrees clockwise (Tesseract then runs --psm 1)")
    parser.add_argument("--json", type=Path, help="also write the scores here")
    args = parser.parse_args(argv)

    pdfs = published_pdfs(args.folders, args.docs, args.seed)
    if not pdfs:
        print(f"no PDFs under {', '.join(map(str, args.folders))} (Debian: apt-get install texlive-latex-base-doc ...)")
        return 2
    if args.scanned and shutil.which("tesseract") is None:
        print("--scanned compares with Tesseract, which is not installed (Debian: apt-get install tesseract-ocr)")
        return 2
    engine = layout_engine()
    psm = Rescan(turn=args.turn).tesseract_psm
    total, scanned, tesseract = Scored("all", [], []), Scored("layout engine, scanned", [], []), Scored(f"tesseract --psm {psm}", [], [])
    families: dict[str, Scored] = {}
    pages: list[tuple[float, str, int]] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="published-pdfs-") as tmp:
        for number, pdf in enumerate(pdfs, 1):
            print(f"[{number}/{len(pdfs)}] {pdf}", file=sys.stderr, flush=True)
            try:
                document = text_pages(pdf, args.pages)
                if not document.numbers:
                    continue
                texts, seconds = read(engine, pdf, document.numbers, args.pages)
                if args.scanned:
                    scan_pdf, pngs = scan(document, args.dpi, Path(tmp) / f"{number:04d}", args.turn)
                    scan_texts, scan_seconds = read(engine, scan_pdf, list(range(1, len(pngs) + 1)), len(pngs), args.dpi)
                    tess_texts, tess_seconds = tesseract_one_process(pngs, args.dpi, Path(tmp) / f"{number:04d}", psm)
            except Exception as exc:  # noqa: BLE001 - a PDF the engine cannot read is reported, the bench goes on
                failed.append(f"{pdf}: {exc!r}")
                continue
            family = families.setdefault(producer_family(document.producer), Scored(producer_family(document.producer), [], []))
            for scored in (total, family):
                _add(scored, texts, document.references, seconds)
            if args.scanned:
                _add(scanned, scan_texts, document.references, scan_seconds)
                _add(tesseract, tess_texts, document.references, tess_seconds)
            pages += [(page_cer, str(pdf), page) for page, page_cer in zip(document.numbers, cer(texts, document.references)[1])]

    print(f"\n{len(pdfs)} published PDFs, {len(total.texts)} pages with a text layer; CER over all characters, "
          f"word recall over all words (goals of born-digital text: CER < 1 %, recall >= 99 %)")
    _print_table("born-digital, per producer", sorted(families.values(), key=lambda s: -len(s.texts)) + [total])
    page_cers = sorted(c for c, _, _ in pages)
    if page_cers:
        print(f"pages: median CER {page_cers[len(page_cers) // 2]:.4f}, over 1 %: {sum(c > 0.01 for c in page_cers)}, "
              f"over 5 %: {sum(c > 0.05 for c in page_cers)}")
    for page_cer, pdf, page in sorted(pages, reverse=True)[: args.worst]:
        print(f"  {page_cer:8.4f}  {pdf} page {page}")
    if args.scanned and scanned.texts:
        turned = f", turned {args.turn} degrees" if args.turn else ""
        _print_table(f"the same pages scanned at {args.dpi} dpi{turned}, one thread each (goal: CER no worse than Tesseract's)",
                     [scanned, tesseract])
        print(f"  pages/s {scanned.pages_per_s / tesseract.pages_per_s:.2f}x Tesseract's")
    for line in failed:
        print(f"  failed: {line}")
    if args.json:
        result = {"all": total.row(), "producers": [s.row() for s in families.values()],
                  "pages": [{"pdf": p, "page": n, "cer": c} for c, p, n in pages], "failed": failed}
        if args.scanned:
            result["scanned"] = {"layout_engine": scanned.row(), "tesseract": tesseract.row()}
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
