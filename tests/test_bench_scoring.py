"""The benchmarks' scoring (``bench/scoring.py``) and the published-PDF bench (``bench/published_pdfs.py``) on real files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pymupdf
import pytest

from bench.published_pdfs import main as published_pdfs
from bench.scoring import cer, normalize, unordered_cer, word_recall


def test_a_soft_hyphen_at_a_line_break_is_one_word() -> None:
    """LuaTeX (minim) writes U+00AD where it broke a word: "op\u00ad" at a line's end, "tions" on the next."""
    reference = "the op\u00ad\ntions of the environ\u00ad\nment"
    assert normalize(reference) == "the options of the environment"
    assert word_recall(["the options of the environment"], [reference]) == 1.0


def test_unordered_cer_counts_what_is_read_not_its_order() -> None:
    reference = "Dear Madam Chair,\n12 October 2022\nThe general meeting"
    moved = "12 October 2022\nDear Madam Chair,\nThe general meeting"
    assert cer([moved], [reference])[0] > 0.3
    assert unordered_cer([moved], [reference]) == 0.0
    assert unordered_cer(["12 October 2022\nThe general meeting"], [reference]) > 0.25  # a dropped line counts


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of PDFs as others publish them: one with a text layer, one whose only page is a picture."""
    folder = tmp_path_factory.mktemp("published")
    with pymupdf.open() as doc:
        page = doc.new_page()
        page.insert_text((72, 100), "Several tributaries dry out completely in late summer.", fontname="tiro", fontsize=11)
        page.insert_text((72, 120), "Groundwater levels responded within two days to rainfall.", fontname="tiro", fontsize=11)
        doc.save(folder / "text.pdf")
    with pymupdf.open() as doc:
        doc.new_page().draw_rect(pymupdf.Rect(100, 100, 300, 300), fill=(0.2, 0.4, 0.8))
        doc.save(folder / "picture.pdf")
    return folder


def test_published_pdf_bench_scores_text_pages_and_leaves_pictures_out(published: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scores.json"
    assert published_pdfs([str(published), "--docs", "5", "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert scores["all"]["pages"] == 1 and scores["all"]["cer"] < 0.01 and scores["all"]["word_recall"] == 1.0
    assert [page["pdf"] for page in scores["pages"]] == [str((published / "text.pdf").resolve())]
    assert "2 published PDFs, 1 pages with a text layer" in capsys.readouterr().out


def test_published_pdf_bench_names_an_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert published_pdfs([str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed (tesseract-ocr)")
def test_published_pdf_bench_reads_the_scans_against_tesseract(published: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.json"
    assert published_pdfs([str(published), "--scanned", "--json", str(out)]) == 0
    scanned = json.loads(out.read_text())["scanned"]
    assert scanned["layout_engine"]["pages"] == scanned["tesseract"]["pages"] == 1
    assert scanned["layout_engine"]["cer"] < 0.05 and scanned["tesseract"]["cer"] < 0.1
