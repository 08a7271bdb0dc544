"""Build the corpus: typeset the documents, export the office one, render their scanned twins.

    python -m samples.corpus.build OUT [--only NAME ...] [--dpi 150,300]

For each document it writes ``OUT/NAME.pdf`` (born-digital: TeX's or LibreOffice's own
PDF, whose text layer is the reference), ``OUT/NAME.tex`` or ``OUT/NAME.fodt`` (the
source), and ``OUT/scanned-DPI/NAME.pdf`` per ``--dpi``: every page rendered in grey at
that resolution into an image-only PDF (no text layer, so every word comes through OCR).
``OUT/corpus.json`` lists what was built, with each document's producer and page count.

Tools: ``pdflatex`` and ``lualatex`` (Debian: texlive-latex-base, -latex-recommended,
-latex-extra, -fonts-recommended, -pictures, -luatex), ``soffice`` (libreoffice-writer-nogui).
A document whose tool is missing is skipped with the reason (``missing_tools``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from samples.corpus import latex
from samples.corpus.office import office_document
from samples.corpus.prose import Prose

Tool = Literal["pdflatex", "lualatex", "soffice"]
PICTURE = "field.png"


@dataclass(frozen=True)
class Spec:
    """One corpus document: its name, the tool that makes its PDF and its source."""

    name: str
    tool: Tool
    kind: str  # what it exercises, for the bench's tables
    source: Callable[[], str]


def _picture_png(path: Path) -> None:
    """A raster picture without words (a smooth field with contour bands), for ``\\includegraphics``."""
    from PIL import Image

    y, x = np.mgrid[0:240, 0:400] / 60.0
    field = np.sin(x) * np.cos(y * 1.3) + 0.4 * np.sin(x * 0.5 + y)
    bands = ((field - field.min()) / np.ptp(field) * 6).astype(int) / 6.0
    rgb = np.stack([70 + 150 * bands, 110 + 100 * bands, 190 - 90 * bands], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path)


SPECS: tuple[Spec, ...] = (
    Spec("twocol-hydrology", "pdflatex", "two-column paper, pdfTeX",
         lambda: latex.two_column_paper(Prose("hydrology", 1), "Runoff Response of a Forested Upland Catchment")),
    Spec("twocol-software", "pdflatex", "two-column paper, pdfTeX",
         lambda: latex.two_column_paper(Prose("software", 2), "Scheduling Requests in a Small Worker Pool", sections=3)),
    Spec("twocol-wide-materials", "pdflatex", "two-column paper, floats across both columns, pdfTeX",
         lambda: latex.two_column_wide_floats(Prose("materials", 3), "Fatigue of Annealed Welded Joints", PICTURE)),
    Spec("twocol-transport-lua", "lualatex", "two-column paper, LuaTeX",
         lambda: latex.two_column_paper(Prose("transport", 4), "Tram Ridership after the Timetable Change", lua=True, sections=3)),
    Spec("onecol-materials", "pdflatex", "one-column paper, pdfTeX",
         lambda: latex.one_column_paper(Prose("materials", 5), "Surface Treatment and Corrosion of Light Alloys")),
    Spec("onecol-hydrology-lua", "lualatex", "one-column paper, LuaTeX",
         lambda: latex.one_column_paper(Prose("hydrology", 6), "Recharge Estimates for a Valley Aquifer", lua=True)),
    Spec("manual-software", "pdflatex", "manual, pdfTeX",
         lambda: latex.manual(Prose("software", 7), "GNU Fieldkit")),
    Spec("letter-transport", "pdflatex", "business letter (KOMA-Script scrlttr2), pdfTeX",
         lambda: latex.business_letter(Prose("transport", 9), "Harriet Calloway", "Westmere Tramway Society",
                                       "The general meeting")),
    Spec("office-transport", "soffice", "office export, LibreOffice Writer",
         lambda: office_document(Prose("transport", 8), "Municipal Transport Review")),
)

#: What a CI test builds: one small two-column pdfTeX paper (seconds when TeX is installed).
SMALL = "twocol-software"


@dataclass
class Built:
    name: str
    kind: str
    producer: str
    pages: int
    pdf: str
    scanned: dict[str, str]  # dpi -> path


def missing_tools(specs: tuple[Spec, ...] = SPECS) -> dict[str, str]:
    """Document name -> the tool it needs that is not installed."""
    return {spec.name: spec.tool for spec in specs if shutil.which(spec.tool) is None}


def _run(command: list[str], cwd: Path, timeout: float = 300) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-3000:]
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{tail}")


def build_pdf(spec: Spec, out_dir: Path) -> Path:
    """Typeset or export one document into ``out_dir/NAME.pdf``; its source beside it."""
    with tempfile.TemporaryDirectory(prefix=f"corpus-{spec.name}-") as tmp:
        work = Path(tmp)
        if spec.tool == "soffice":
            source = work / f"{spec.name}.fodt"
            source.write_text(spec.source(), encoding="utf-8")
            profile = (work / "profile").as_uri()  # a private profile: runs in parallel do not clash
            _run(["soffice", f"-env:UserInstallation={profile}", "--headless", "--convert-to", "pdf",
                  "--outdir", str(work), str(source)], work)
        else:
            source = work / f"{spec.name}.tex"
            source.write_text(spec.source(), encoding="utf-8")
            _picture_png(work / PICTURE)
            for _ in range(2):  # the second run settles the table of contents and references
                _run([spec.tool, "-interaction=nonstopmode", "-halt-on-error", source.name], work)
        pdf = out_dir / f"{spec.name}.pdf"
        shutil.copy(work / f"{spec.name}.pdf", pdf)
        shutil.copy(source, out_dir / source.name)
    return pdf


#: What journal archives stamp on every page of a scan they serve, as text (``scanned_twin``'s ``stamp``).
DOWNLOAD_FOOTER = "This content downloaded from 192.0.2.7 on Mon, 07 Dec 2026 10:15:02 UTC"


def scanned_twin(pdf: Path, path: Path, dpi: int, tilt: float = 0.0, worn: bool = False, turn: int = 0,
                 bilevel: int = 0, stamp: str = "") -> None:
    """Every page of ``pdf`` rendered in grey at ``dpi`` into an image-only PDF of the same page size; ``tilt``
    degrees turn each page counter-clockwise around its centre, white where the corners come in, as a
    scanner's feeder tilts a sheet; ``worn`` gives it what an office scanner adds (``_worn``); ``turn``
    (90, 180, 270) lays the scan turned that many degrees clockwise, on a page of the turned size, as a
    sheet fed sideways or upside down comes out; ``bilevel`` (a grey level, 1-254) stores it in black and white,
    every pixel at or below that level black, as a 1-bit CCITT Group 4 image: how document scanners' text mode,
    fax and archives store pages (hairlines lighter than the threshold are lost, as on such scans); ``stamp`` is
    written as text (a text layer of a few words) at the foot of every page, as archives stamp a download footer."""
    import io

    import pymupdf
    from PIL import Image

    noise = np.random.default_rng(0)
    with pymupdf.open(pdf) as source, pymupdf.open() as out:
        for page in source:
            image = Image.open(io.BytesIO(page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY, alpha=False).tobytes("png")))
            if tilt:
                image = image.rotate(tilt, resample=Image.Resampling.BICUBIC, fillcolor=255)
            if turn % 360:
                image = image.rotate(-turn, expand=True)  # PIL turns counter-clockwise; quarter turns are exact
            if worn:
                image = _worn(image, noise)
            if bilevel:
                with _ccitt_page(image, bilevel, dpi) as scan:  # the page as large as the pixels at dpi: nearly the same
                    out.insert_pdf(scan)
                continue
            width, height = (page.rect.height, page.rect.width) if turn % 180 else (page.rect.width, page.rect.height)
            encoded = io.BytesIO()
            if worn:
                image.save(encoded, "JPEG", quality=70)
            else:
                image.save(encoded, "PNG")
            new_page = out.new_page(width=width, height=height)
            new_page.insert_image(new_page.rect, stream=encoded.getvalue())
        if stamp:
            for new_page in out:
                new_page.insert_text((36, new_page.rect.height - 12), stamp, fontsize=7)
        path.parent.mkdir(parents=True, exist_ok=True)
        out.save(path, garbage=3, deflate=True)


def outlined_twin(pdf: Path, path: Path) -> None:
    """``pdf`` with its text converted to outlines by Ghostscript (``-dNoOutputFonts``), as print-ready PDFs and
    "create outlines" exports are: every glyph a filled vector path, no text layer (``apt-get install ghostscript``)."""
    if shutil.which("gs") is None:
        raise RuntimeError("converting text to outlines needs Ghostscript: apt-get install ghostscript")
    path.parent.mkdir(parents=True, exist_ok=True)
    _run(["gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-dNoOutputFonts", "-sDEVICE=pdfwrite",
          f"-sOutputFile={path}", str(pdf)], cwd=path.parent)


def _ccitt_page(image, threshold: int, dpi: int):
    """A one-page PDF of ``image`` in black and white (at or below ``threshold`` black) as a CCITT Group 4 image,
    its page as large as ``image`` at ``dpi``.

    Pillow writes 1-bit images into a PDF as CCITTFaxDecode streams; PyMuPDF's ``insert_image`` would store
    them Flate-compressed, which is not what a scanner writes.
    """
    import io

    import pymupdf

    if not 0 < threshold < 255:
        raise ValueError(f"bilevel threshold {threshold} is not a grey level between 1 and 254")
    encoded = io.BytesIO()
    image.point(lambda level: 0 if level <= threshold else 255).convert("1").save(encoded, "PDF", resolution=dpi)
    return pymupdf.open("pdf", encoded.getvalue())


def _worn(image, noise: np.random.Generator):
    """A grey page as an office scanner delivers it: optics' blur (0.6 px), grey paper, sensor noise (sigma 9 of
    255); the caller stores it as JPEG at quality 70."""
    from PIL import Image, ImageFilter

    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.float32) * 0.92 + 12
    pixels += noise.normal(0.0, 9.0, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def build_corpus(out_dir: Path, only: list[str] | None = None, dpis: tuple[int, ...] = (150, 300),
                 log: Callable[[str], None] = print) -> list[Built]:
    """Build the named documents (default: all whose tools are installed) and their scanned twins."""
    import pymupdf

    out_dir.mkdir(parents=True, exist_ok=True)
    specs = [spec for spec in SPECS if not only or spec.name in only]
    unknown = set(only or ()) - {spec.name for spec in SPECS}
    if unknown:
        raise ValueError(f"unknown corpus documents: {sorted(unknown)}; known: {[s.name for s in SPECS]}")
    missing = missing_tools(tuple(specs))
    built = []
    for spec in specs:
        if spec.name in missing:
            log(f"skipped {spec.name}: {missing[spec.name]} is not installed")
            continue
        pdf = build_pdf(spec, out_dir)
        scanned = {}
        for dpi in dpis:
            twin = out_dir / f"scanned-{dpi}" / pdf.name
            scanned_twin(pdf, twin, dpi)
            scanned[str(dpi)] = str(twin)
        with pymupdf.open(pdf) as doc:
            producer, pages = doc.metadata.get("producer", ""), doc.page_count
        built.append(Built(spec.name, spec.kind, producer, pages, str(pdf), scanned))
        log(f"built {spec.name}: {pages} pages ({producer})")
    (out_dir / "corpus.json").write_text(json.dumps([asdict(b) for b in built], indent=2))
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--only", nargs="*", default=None, help="document names (default: all)")
    parser.add_argument("--dpi", default="150,300", help="resolutions of the scanned twins")
    args = parser.parse_args(argv)
    built = build_corpus(args.out_dir, args.only, tuple(int(d) for d in args.dpi.split(",") if d))
    print(f"{len(built)} documents, {sum(b.pages for b in built)} pages in {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
