"""The PyMuPDF layout engine's OCR pages: the engine writes RapidOCR's text layer itself, then
lays the page out, so what its ``ocr`` option decides is what happens."""

from __future__ import annotations

import shutil
from pathlib import Path

import pymupdf
import pytest

from documents.pages import SplitLimits, split_pages
from engines.base import PageImage, PageMeta
from engines.pymupdf_layout import PyMuPDFLayoutEngine, PyMuPDFLayoutOptions
from samples.generate import TITLE

STALE = "ZQXW stale words"


def _first_page(pdf: bytes, name: str) -> PageImage:
    _, _, rendered = split_pages(pdf, "pdf", SplitLimits())
    page = next(iter(rendered))
    meta = PageMeta(name, name, page.page_number, page.width, page.height, page.scale, page.pdf_bytes,
                    page.has_text_layer)
    return PageImage(page.image(), meta)


def _with_stale_ocr_layer(scanned: Path) -> bytes:
    """The scanned page with an earlier tool's invisible OCR text on it (render mode 3), all wrong."""
    doc = pymupdf.open(scanned)
    doc[0].insert_text((72, 72), STALE, fontsize=11, render_mode=3)
    return doc.tobytes()


def _text(layout) -> str:
    return " ".join(element.text for element in layout.elements)


@pytest.fixture(scope="module")
def engine() -> PyMuPDFLayoutEngine:
    return PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(ocr="always", threads=1))


def test_an_image_only_page_is_read_through_ocr(engine: PyMuPDFLayoutEngine, samples_dir: Path) -> None:
    page = _first_page((samples_dir / "report_scanned.pdf").read_bytes(), "report_scanned.pdf")
    assert not page.meta.has_text_layer
    layout = engine.layout([page])[0]
    assert layout.info["ocr"] and TITLE in _text(layout)
    assert {"Section-header", "Table"} <= {element.category for element in layout.elements}


def test_a_black_and_white_ccitt_scan_is_read(engine: PyMuPDFLayoutEngine, samples_dir: Path, tmp_path: Path) -> None:
    """A document scanner's text mode, fax and archives store a page as a 1-bit CCITT Group 4 image, usually at
    300 dpi: the job renders it at its own dpi (grey from black and white) and reads it as well as a grey scan."""
    from bench.scoring import elements_text, word_recall
    from samples.corpus.build import scanned_twin

    scanned = tmp_path / "report_bw.pdf"
    scanned_twin(samples_dir / "report.pdf", scanned, dpi=300, bilevel=160)
    with pymupdf.open(scanned) as doc:
        image = doc[0].get_images(full=True)[0]
        assert image[4] == 1 and image[8] == "CCITTFaxDecode"  # bits per component, filter: as a scanner stores it
    with pymupdf.open(samples_dir / "report.pdf") as born:
        reference = born[0].get_text()
    recall = {}
    for name in ("report_bw.pdf", "report_scanned.pdf"):
        path = scanned if name == "report_bw.pdf" else samples_dir / name
        layout = engine.layout([_first_page(path.read_bytes(), name)])[0]
        assert layout.info["ocr"] and TITLE in _text(layout)
        recall[name] = word_recall([elements_text(layout.elements)], [reference])
    assert recall["report_bw.pdf"] > 0.97 and recall["report_bw.pdf"] >= recall["report_scanned.pdf"] - 0.01, recall


def test_ocr_always_replaces_an_earlier_ocr_layer(engine: PyMuPDFLayoutEngine, samples_dir: Path) -> None:
    page = _first_page(_with_stale_ocr_layer(samples_dir / "report_scanned.pdf"), "restamped.pdf")
    assert page.meta.has_text_layer  # the stale words count as a text layer
    text = _text(engine.layout([page])[0])
    assert TITLE in text and "ZQXW" not in text


def test_ocr_auto_keeps_a_page_s_own_text_layer(samples_dir: Path) -> None:
    auto = PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(ocr="auto", threads=1))
    layout = auto.layout([_first_page(_with_stale_ocr_layer(samples_dir / "report_scanned.pdf"), "restamped.pdf")])[0]
    assert not layout.info["ocr"] and "ZQXW" in _text(layout)  # auto trusts an existing text layer


def test_the_ocr_text_layer_is_the_one_pymupdf4llm_writes(engine: PyMuPDFLayoutEngine, samples_dir: Path) -> None:
    """``engines.ocr_text_layer`` writes the lines as pymupdf4llm's ``exec_ocr_full`` does: same words, same boxes."""
    from pymupdf4llm.ocr.exec_ocr_interface import exec_ocr_full

    from engines.ocr_text_layer import write_lines

    page = _first_page((samples_dir / "report_scanned.pdf").read_bytes(), "report_scanned.pdf")
    lines = engine.ocr.read_lines(page.image)
    assert len(lines) > 10
    ours, theirs = (pymupdf.open(stream=page.meta.pdf_bytes, filetype="pdf") for _ in range(2))
    assert write_lines(ours[0], lines, (page.image.shape[1], page.image.shape[0])) == len(lines)
    exec_ocr_full(theirs[0], lambda image: [(line.quad, line.text, line.score) for line in lines],
                  dpi=round(72 * page.meta.scale), keep_ocr_text=False)
    words = [doc[0].get_text("words") for doc in (ours, theirs)]
    assert [w[4] for w in words[0]] == [w[4] for w in words[1]] and len(words[0]) > 40
    assert max(abs(a[i] - b[i]) for a, b in zip(*words) for i in range(4)) < 0.05


def test_the_table_finder_runs_only_where_it_can_find_a_table(samples_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a scanned page the table finder runs where the layout model sees a table; skipping it elsewhere
    changes nothing (it fuses the model's tables with drawn ones, and a scan has neither)."""
    auto = PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(threads=1))
    _, _, rendered = split_pages((samples_dir / "report_scanned.pdf").read_bytes(), "pdf", SplitLimits())
    pages = [PageImage(p.image(), PageMeta("s.pdf", "s.pdf", p.page_number, p.width, p.height, p.scale, p.pdf_bytes,
                                           p.has_text_layer)) for p in rendered]
    calls: list[int] = []
    find_tables = pymupdf.Page.find_tables

    def counted(page, *args, **kwargs):
        calls.append(page.number)
        return find_tables(page, *args, **kwargs)

    monkeypatch.setattr(pymupdf.Page, "find_tables", counted)
    layouts = auto.layout(pages)
    tables = [[e for e in layout.elements if e.category == "Table"] for layout in layouts]
    assert tables[0] and tables[0][0].text.startswith("<table") and "<td" in tables[0][0].text  # HTML as before
    assert not tables[1] and len(calls) == 1  # the second page (no table) skipped the finder
    monkeypatch.setattr(pymupdf.Page, "get_cdrawings", lambda page, *args, **kwargs: [{}])  # "something is drawn"
    forced = auto.layout(pages[1:])[0]
    assert len(calls) == 2 and forced.elements == layouts[1].elements


@pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("gs") is None,
                    reason="needs pdflatex (texlive-latex-*) and Ghostscript (apt-get install ghostscript)")
def test_text_converted_to_outlines_is_read_like_a_scan(tmp_path: Path) -> None:
    """A print-ready PDF whose text Ghostscript turned into vector outlines has no text layer: it is OCR'd, and laid out
    on its pixels. On the page with its thousands of glyph paths, the layout model and the table finder took the
    paragraphs for tables (the corpus, ``bench.ocr_quality --outlined``: CER 0.198 -> 0.007)."""
    from bench.scoring import cer, elements_text
    from samples.corpus.build import SMALL, SPECS, build_pdf, outlined_twin

    pdf = build_pdf(next(spec for spec in SPECS if spec.name == SMALL), tmp_path)
    outlined = tmp_path / "outlined.pdf"
    outlined_twin(pdf, outlined)
    with pymupdf.open(outlined) as doc, pymupdf.open(pdf) as born:
        assert not doc[0].get_text().strip() and len(doc[0].get_cdrawings()) > 500  # glyphs as paths
        references = [page.get_text() for page in born]
        tables = sum(len(page.find_tables().tables) > 0 for page in born)
    _, _, rendered = split_pages(outlined.read_bytes(), "pdf", SplitLimits())
    pages = [PageImage(p.image(), PageMeta("o.pdf", "o.pdf", p.page_number, p.width, p.height, p.scale, p.pdf_bytes,
                                           p.has_text_layer)) for p in rendered]
    layouts = PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(threads=1)).layout(pages)
    assert all(layout.info["ocr"] for layout in layouts)
    assert sum(element.category == "Table" for layout in layouts for element in layout.elements) <= max(tables, 1)
    assert cer([elements_text(layout.elements) for layout in layouts], references)[0] < 0.03
