"""Page and crop images on disk (``--page-images``, ``--crops``): files, sizes, manifest, combined names, resume.

One local Ray serves every run of the job in this module (the job joins it). The
picture engine is wrapped to note the size of every crop it is handed, so the test
compares the PNGs on disk with what picture OCR really read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from actors.stages import read_document, split_document
from documents.images import (
    DocumentImages,
    ImageIndex,
    crop_image_name,
    images_complete,
    manifest,
    page_image_name,
    png_from_rgb,
    write_image,
    write_manifest,
)
from documents.report import DocumentReport, PageRecord, combined_page_records
from documents.writer import UnsafePath
from engines.rapidocr.engine import RapidOCREngine
from engines.rapidocr.options import RapidOCROptions
from jobs.ocr import main

ARGS = ["--set", "cluster.num_cpus=2", "--set", "ocr.layout.pool.concurrency=[1,1]"]
ODD_NAME = "..%2F..; odd name (1).pdf"  # what discover makes of it must stay inside --out


class RecordingOptions(RapidOCROptions):
    crop_log: str


class RecordingPictureEngine(RapidOCREngine):
    """RapidOCR that appends the size of each crop it reads to the file ``crop_log`` (its actor runs in another process)."""

    Options = RecordingOptions

    def recognize(self, crops):
        with open(self.options.crop_log, "a", encoding="utf-8") as log:
            for crop in crops:
                log.write(f"{crop.shape[1]}x{crop.shape[0]}\n")
        return super().recognize(crops)


# ----------------------------------------------------------------------------- without Ray
def test_image_names_never_escape_the_output_directory(tmp_path: Path):
    assert page_image_name("sub/report.pdf", 3) == "sub/report.pdf.images/pages/page-0003.png"
    assert crop_image_name("report.pdf", 2, 1) == "report.pdf.images/crops/page-0002-region-01.png"
    with pytest.raises(UnsafePath):
        write_image(tmp_path / "out", page_image_name("../../evil", 1), b"png")
    assert not any(tmp_path.rglob("*.png"))


def test_combined_image_name_is_the_written_file_or_null():
    report = DocumentReport(
        source_path="/x/a.pdf", name="a.pdf", sha256=None, page_count=2, config_fingerprint="f", created_at="now",
        pages=[PageRecord(page_number=1, width=10, height=10, scale=1.0), PageRecord(page_number=2, width=10, height=10, scale=1.0)],
    )
    assert [r["image_name"] for r in combined_page_records(report)] == [None, None]
    written = {1: "a.pdf.images/pages/page-0001.png"}  # page 2's image was not written (say it failed to render)
    assert [r["image_name"] for r in combined_page_records(report, written)] == ["a.pdf.images/pages/page-0001.png", None]


def test_split_writes_the_page_png_only_when_asked(samples_dir: Path, tmp_path: Path):
    path = samples_dir / "report.pdf"
    document = read_document({"doc_id": "d", "name": "report.pdf", "source_path": str(path)}, max_file_bytes=10**9)
    limits = {"dpi": 72, "max_pixels": 12_000_000, "max_image_pixels": 10**8, "pages": "1", "max_pages": None, "pixels": False}
    (plain,) = split_document(dict(document), limits)
    assert plain["images_json"] == "" and not any(tmp_path.iterdir())
    (row,) = split_document(dict(document), {**limits, "page_png": True}, str(tmp_path))
    assert row["pixels"] == b"" and (row["width"], row["height"]) == (plain["width"], plain["height"])
    entry = json.loads(row["images_json"])["page"]
    with Image.open(tmp_path / entry["file"]) as image:
        assert image.size == (row["width"], row["height"])


def test_a_name_that_would_escape_fails_the_page_and_writes_nothing(samples_dir: Path, tmp_path: Path):
    path = samples_dir / "report_page1.png"
    document = read_document({"doc_id": "d", "name": "../../escape", "source_path": str(path)}, max_file_bytes=10**9)
    limits = {"dpi": 72, "max_pixels": 1_000_000, "max_image_pixels": 10**8, "pages": None, "max_pages": None,
              "pixels": False, "page_png": True}
    out = tmp_path / "a" / "b" / "out"
    (row,) = split_document(document, limits, str(out))
    assert json.loads(row["error_json"])["kind"] == "image_write_error" and row["images_json"] == ""
    assert not list(tmp_path.rglob("*.png"))


# ----------------------------------------------------------------------------- the job
@pytest.fixture(scope="module")
def runs(ray_cpu, tmp_path_factory: pytest.TempPathFactory, samples_dir: Path):
    """The same inputs run with images on (then resumed), and off."""
    inputs = tmp_path_factory.mktemp("image_inputs")
    shutil.copy(samples_dir / "report.pdf", inputs / "report.pdf")
    shutil.copy(samples_dir / "report_page1.png", inputs / "report_page1.png")
    shutil.copy(samples_dir / "report.pdf", inputs / ODD_NAME)
    one_page = tmp_path_factory.mktemp("image_inputs_one_page")  # the off runs: one page is enough
    shutil.copy(samples_dir / "report_page1.png", one_page / "report_page1.png")
    on, off = tmp_path_factory.mktemp("images_on"), tmp_path_factory.mktemp("images_off")
    crop_log = tmp_path_factory.mktemp("crop_log") / "crops.txt"
    engine = ["--set", f"ocr.picture.engine={__name__}:RecordingPictureEngine",
              "--set", f"ocr.picture.options={{crop_log: {crop_log}}}"]
    assert main([str(inputs), "--out", str(on), "--combined", "--page-images", "--crops", *ARGS, *engine]) == 0
    assert main([str(one_page), "--out", str(off), "--combined", *ARGS]) == 0
    return inputs, one_page, on, off, crop_log.read_text().split(), engine


def _json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _names(out: Path) -> list[str]:
    return sorted(p.name[: -len(".json")] for p in out.glob("*.json") if p.name.endswith(".pdf.json") or p.name.endswith(".png.json"))


def test_page_pngs_have_the_rendered_page_size(runs):
    _, _, on, _, _, _ = runs
    names = _names(on)
    assert len(names) == 3
    for name in names:
        report = _json(on / f"{name}.json")
        document = _json(on / f"{name}.images.json")
        assert document["page_images"] is True and document["crops"] is True
        assert [p["page"] for p in document["pages"]] == [p["page_number"] for p in report["pages"]]
        for page, entry in zip(report["pages"], document["pages"]):
            assert entry["file"] == f"{name}.images/pages/page-{page['page_number']:04d}.png"
            with Image.open(on / entry["file"]) as image:
                assert image.format == "PNG" and image.mode == "RGB"
                assert image.size == (page["width"], page["height"]) == (entry["width"], entry["height"])


def test_crop_manifest_matches_the_report_and_what_picture_ocr_read(runs):
    _, _, on, _, read_sizes, _ = runs
    written_sizes = []
    for name in _names(on):
        report = _json(on / f"{name}.json")
        pictures = _json(on / f"{name}.images.json")["pictures"]
        by_key = {(p["page"], p["region_id"]): p for p in pictures}
        regions = [(page["page_number"], r) for page in report["pages"] for r in page["picture_ocr_result"]]
        if name.endswith(".pdf"):
            assert regions, "the sample's page 2 has a picture read by picture OCR"
        assert len(by_key) == len(pictures) == len(regions)
        for page_number, region in regions:
            entry = by_key[(page_number, region["region_id"])]
            page = report["pages"][page_number - 1]
            assert page["ocr_pass_result"][region["region_id"]]["category"] == "Picture"
            assert entry["bbox"] == region["bbox"] == page["ocr_pass_result"][region["region_id"]]["bbox"]
            assert entry["file"] == f"{name}.images/crops/page-{page_number:04d}-region-{region['region_id']:02d}.png"
            assert entry["padding_px"] == 8 and 1.0 <= entry["upscale"] <= 2.0
            left, top, right, bottom = entry["crop_box"]
            assert 0 <= left < right <= page["width"] and 0 <= top < bottom <= page["height"]
            with Image.open(on / entry["file"]) as image:
                assert image.size == (entry["width"], entry["height"])
                # the crop is the padded box enlarged by the factor (rendered from the PDF: within a pixel)
                assert abs(image.size[0] - (right - left) * entry["upscale"]) <= 1.5
            written_sizes.append(f"{entry['width']}x{entry['height']}")
    assert sorted(written_sizes) == sorted(read_sizes)  # exactly the crops picture OCR was handed


def test_combined_image_name_points_at_the_page_png(runs):
    _, _, on, off, _, _ = runs
    for name in _names(on):
        records = _json(on / f"{name}.pages.json")
        assert records and all((on / r["image_name"]).is_file() for r in records)
    (record,) = _json(off / "report_page1.png.pages.json")
    assert record["image_name"] is None


def test_without_the_options_no_image_is_written(runs):
    _, _, _, off, _, _ = runs
    assert not list(off.rglob("*.png")) and not list(off.glob("**/*.images.json"))
    assert not [p for p in off.rglob("*") if p.is_dir()]  # no per-document image folders either


def test_odd_names_stay_inside_the_output_directory(runs):
    _, _, on, _, _, _ = runs
    (odd,) = [n for n in _names(on) if "odd" in n]
    assert ".." not in Path(odd).parts and "/" not in odd
    root = on.resolve()
    for path in on.rglob("*"):
        assert root in path.resolve().parents
    assert (on / f"{odd}.images" / "pages" / "page-0001.png").is_file()


def test_resume_keeps_images_and_redoes_documents_missing_them(runs):
    inputs, one_page, on, off, _, engine = runs
    pngs = {p: p.stat().st_mtime_ns for p in on.rglob("*.png")}
    again = [str(inputs), "--out", str(on), "--page-images", "--crops", *ARGS, *engine]
    assert main(again) == 0  # all done: nothing rewritten
    assert _json(on / "summary.json")["documents_skipped"] == 3
    assert {p: p.stat().st_mtime_ns for p in on.rglob("*.png")} == pngs

    lost = on / "report.pdf.images" / "pages" / "page-0002.png"
    lost.unlink()  # an image gone: that document is redone, the others kept
    assert main(again) == 0
    summary = _json(on / "summary.json")
    assert summary["documents_skipped"] == 2 and summary["documents_written"] == 1
    assert lost.is_file() and sorted(on.rglob("*.png")) == sorted(pngs)  # back, and nothing duplicated

    # Asking for page images where a run wrote none redoes the document.
    assert main([str(one_page), "--out", str(off), "--page-images", *ARGS]) == 0
    assert _json(off / "summary.json")["documents_written"] == 1
    assert [p.relative_to(off).as_posix() for p in off.rglob("*.png")] == ["report_page1.png.images/pages/page-0001.png"]


def test_crops_need_picture_ocr():
    from configuration.schema import OCRConfig

    with pytest.raises(ValueError, match="needs ocr.picture.enabled"):
        OCRConfig.model_validate({"picture": {"enabled": False}, "output": {"crops": True}})


def test_index_lists_a_redelivered_page_once():
    index = ImageIndex()
    row = {"name": "a.pdf", "images_json": json.dumps({"page": {"page": 1, "file": "a.pdf.images/pages/page-0001.png"},
                                                       "crops": [{"page": 1, "region_id": 2, "file": "c"}]})}
    index.add(row)
    index.add(row)
    images = index.pop("a.pdf")
    document = manifest("a.pdf", "/a.pdf", images, True, True)
    assert len(document["pages"]) == 1 and len(document["pictures"]) == 1
    assert index.pop("a.pdf") == DocumentImages()


def test_images_complete_needs_the_manifest_and_its_files(tmp_path: Path):
    assert images_complete(tmp_path, "a.pdf", False, False)
    assert not images_complete(tmp_path, "a.pdf", True, False)
    write_image(tmp_path, "a.pdf.images/pages/page-0001.png", tiny_png())
    (tmp_path / "a.pdf.images.json").write_text(json.dumps(
        {"page_images": True, "crops": False, "pages": [{"file": "a.pdf.images/pages/page-0001.png"}], "pictures": []}))
    assert images_complete(tmp_path, "a.pdf", True, False)
    assert not images_complete(tmp_path, "a.pdf", True, True)  # crops asked for now, not written then


def tiny_png() -> bytes:
    """A valid 3 x 2 PNG."""
    return png_from_rgb(np.zeros((2, 3, 3), dtype=np.uint8))


def test_manifest_removes_stale_images_of_the_kinds_written(tmp_path: Path):
    stale_crop = tmp_path / "a.pdf.images" / "crops" / "page-0003-region-01.png"
    kept_crop = "a.pdf.images/crops/page-0001-region-02.png"
    old_page = tmp_path / "a.pdf.images" / "pages" / "page-0003.png"  # pages not asked for now: left alone
    for path in (stale_crop, tmp_path / kept_crop, old_page):
        write_image(tmp_path, path.relative_to(tmp_path).as_posix(), tiny_png())
    images = DocumentImages(pictures={(1, 2): {"file": kept_crop, "page": 1, "region_id": 2}})
    write_manifest(tmp_path, "a.pdf", manifest("a.pdf", "/a.pdf", images, page_images=False, crops=True))
    assert not stale_crop.exists() and (tmp_path / kept_crop).is_file() and old_page.is_file()
    assert images_complete(tmp_path, "a.pdf", False, True)
