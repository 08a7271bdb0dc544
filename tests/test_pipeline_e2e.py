"""End to end: the OCR job on the samples and on every kind of bad input, then resume.

One Ray run covers all of it (starting Ray costs seconds): born-digital, scanned and PNG
samples, the scan laid sideways (as a sheet fed the wrong way round comes out), plus the
bad inputs, in one input directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from documents.report import json_schema
from jobs.ocr import main
from samples.generate import BODY_WORDS, PICTURE_WORDS, TITLE
from tests.conftest import make_bad_inputs, make_blank_pdf
from tests.test_orientation import _turned_scan

pytestmark = pytest.mark.ray

ARGS = ["--set", "cluster.num_cpus=2", "--set", "ocr.layout.pool.concurrency=[1,1]"]


def _texts(report: dict) -> str:
    parts = []
    for page in report["pages"]:
        parts += [e["text"] for e in page["ocr_pass_result"]]
        parts += [p["text"] for p in page["picture_ocr_result"]]
    return " ".join(parts)


@pytest.fixture(scope="module")
def run(tmp_path_factory, samples_dir):
    inputs = tmp_path_factory.mktemp("inputs")
    for name in ("report.pdf", "report_scanned.pdf", "report_page1.png"):
        shutil.copy(samples_dir / name, inputs / name)
    (inputs / "report_sideways.pdf").write_bytes(_turned_scan((samples_dir / "report.pdf").read_bytes(), 90))
    expected_errors = make_bad_inputs(inputs / "bad")
    make_blank_pdf(inputs / "blank.pdf")
    out = tmp_path_factory.mktemp("out")
    code = main([str(inputs), "--out", str(out), "--combined", *ARGS])
    assert code == 0
    return inputs, out, expected_errors


def _report(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


def test_reports_validate_against_schema(run):
    _, out, expected = run
    schema = json_schema()
    names = ["report.pdf", "report_scanned.pdf", "report_sideways.pdf", "report_page1.png"] + [f"bad/{n}" for n in expected]
    for name in names:
        jsonschema.validate(_report(out, name), schema)


def test_born_digital_text_and_structure(run):
    _, out, _ = run
    report = _report(out, "report.pdf")
    assert report["page_count"] == 2 and [p["page_number"] for p in report["pages"]] == [1, 2]
    assert report["error"] is None and report["pages_failed"] == 0
    page1, page2 = report["pages"]
    text = _texts(report)
    assert TITLE in text
    for word in BODY_WORDS:
        assert word in text
    categories1 = {e["category"] for e in page1["ocr_pass_result"]}
    assert {"Section-header", "Text", "Table"} <= categories1
    table = next(e for e in page1["ocr_pass_result"] if e["category"] == "Table")
    assert table["text"].startswith("<table>") and "Harbor" in table["text"]
    # bboxes are page pixels inside the page
    for element in page1["ocr_pass_result"]:
        x0, y0, x1, y1 = element["bbox"]
        assert 0 <= x0 <= x1 <= page1["width"] and 0 <= y0 <= y1 <= page1["height"]
    # The picture has no text layer: its words come only from picture OCR.
    pictures = [i for i, e in enumerate(page2["ocr_pass_result"]) if e["category"] == "Picture"]
    assert pictures and all(page2["ocr_pass_result"][i]["text"] == "" for i in pictures)
    picture_text = " ".join(p["text"] for p in page2["picture_ocr_result"])
    for word in PICTURE_WORDS:
        assert word in picture_text
    assert page2["picture_ocr_result"][0]["region_id"] in pictures
    assert page2["engines"] == {"layout": "pymupdf", "picture": "rapidocr"}
    assert page1["timings"]["layout"] > 0


def test_scanned_twin_and_png_come_through_ocr(run):
    _, out, _ = run
    for name in ("report_scanned.pdf", "report_page1.png"):
        report = _report(out, name)
        assert report["pages_failed"] == 0
        assert all(page["info"]["ocr"] for page in report["pages"])
        text = _texts(report)
        assert TITLE in text
        assert "inspection of the reservoir" in text  # spaces between words are kept
    scanned = _texts(_report(out, "report_scanned.pdf"))
    for word in PICTURE_WORDS:
        assert word in scanned


def test_a_scan_lying_sideways_is_read_upright(run):
    _, out, _ = run
    report = _report(out, "report_sideways.pdf")
    assert report["pages_failed"] == 0
    assert [page["info"]["rotation_degrees"] for page in report["pages"]] == [90, 90]
    text = _texts(report)
    assert TITLE in text and "inspection of the reservoir" in text
    for word in PICTURE_WORDS:
        assert word in text


def test_markdown_and_combined_outputs(run):
    _, out, _ = run
    markdown = (out / "report.pdf.md").read_text()
    assert f"## {TITLE}" in markdown or f"# {TITLE}" in markdown
    assert "<table>" in markdown and "> SOLAR" in markdown.replace("SOLAR OUTPUT", "SOLAR")
    combined = json.loads((out / "report.pdf.pages.json").read_text())
    assert [sorted(r) for r in combined] == [["image_name", "ocr_pass_result", "picture_ocr_result"]] * 2
    # Page images were not asked for: image_name says so (null) and no image is written.
    assert [r["image_name"] for r in combined] == [None, None]
    assert not list(out.rglob("*.png")) and not list(out.rglob("*.images.json"))


def test_blank_page_gives_empty_result_not_error(run):
    _, out, _ = run
    report = _report(out, "blank.pdf")
    (page,) = report["pages"]
    assert page["error"] is None and page["ocr_pass_result"] == [] and page["picture_ocr_result"] == []


def test_bad_inputs_give_error_records_and_lose_nothing_else(run):
    _, out, expected = run
    for name, kind in expected.items():
        report = _report(out, f"bad/{name}")
        assert report["error"]["kind"] == kind, (name, report["error"])
        assert report["source_path"].endswith(name) and report["pages"] == []
    summary = json.loads((out / "summary.json").read_text())
    assert summary["documents_total"] == 5 + len(expected)
    assert summary["documents_failed"] == len(expected)
    assert summary["pages_total"] == 8 and summary["pages_failed"] == 0  # 2 + 2 + 2 sideways + 1 + 1 blank
    for kind in expected.values():
        assert summary["failures_by_kind"][kind] >= 1
    assert summary["pages_per_second"] > 0 and summary["pages_per_second_after_first_document"] > 0
    assert {"read", "split", "layout", "picture"} <= set(summary["stage_seconds"])


def test_resume_skips_finished_documents_and_force_redoes(run):
    inputs, out, expected = run
    before = (out / "report.pdf.json").stat().st_mtime_ns
    assert main([str(inputs), "--out", str(out), *ARGS]) == 0  # nothing left: no Ray started
    summary = json.loads((out / "summary.json").read_text())
    assert summary["documents_skipped"] == summary["documents_total"] == 5 + len(expected)
    assert summary["documents_written"] == 0
    assert (out / "report.pdf.json").stat().st_mtime_ns == before
    # A changed file and a changed config are redone.
    (inputs / "report_page1.png").write_bytes((inputs / "report_page1.png").read_bytes() + b"\0")
    assert main([str(inputs), "--out", str(out), "--pages", "1", *ARGS]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["documents_written"] == summary["documents_total"]  # --pages changes the fingerprint
    report = _report(out, "report.pdf")
    assert report["pages_selected"] == [1] and len(report["pages"]) == 1
