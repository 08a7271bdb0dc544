"""Training data sources: synthetic splits, every on-disk format through ``iter_records``,
crops from OCR reports, and the ``make_ocr_data`` CLI. All data is made here, a few rows each.

The report test builds the report with the real pydantic models and the pipeline's own
rasterizer rather than running the OCR job: the job needs Ray, whose start alone takes
longer than this file's budget (the Ray end-to-end tests cover the job itself).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
import numpy as np
import pymupdf
import pytest
from PIL import Image

from documents.inputs import sha256_of_file
from documents.pages import SplitLimits, split_pages
from documents.report import DocumentReport, LayoutElement, PageRecord, PictureText
from jobs.make_ocr_data import main
from training.data.from_reports import records_from_reports
from training.data.sources import ColumnMap, DatasetSpec, DataSourceError, iter_records, load_dataset_from_spec
from training.data.synthetic import SyntheticConfig, write_splits


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    """Keep ``datasets``' arrow cache inside the test's folder, not in the user's home."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


def _png(path: Path, size=(40, 16), colour=(0, 0, 0)) -> None:
    Image.new("RGB", size, colour).save(path)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _ink(image: Image.Image) -> float:
    grey = np.asarray(image.convert("L"))
    return float((grey < 128).mean())


# ----------------------------------------------------------------------------- synthetic + parquet
def _texts_and_pixels(path: Path, split: str) -> tuple[list[str], list[bytes]]:
    records = list(iter_records(DatasetSpec(path=str(path), split=split)))
    return [r.text for r in records], [r.image.tobytes() for r in records]


def test_synthetic_splits_are_deterministic_and_differ(tmp_path):
    config = SyntheticConfig(seed=7)
    sizes = {"train": 4, "val": 4}
    write_splits(config, tmp_path / "a", sizes)
    write_splits(config, tmp_path / "b", sizes)
    for split in sizes:
        assert _texts_and_pixels(tmp_path / "a", split) == _texts_and_pixels(tmp_path / "b", split)
    train, val = _texts_and_pixels(tmp_path / "a", "train"), _texts_and_pixels(tmp_path / "a", "val")
    assert train[0] != val[0] and train[1] != val[1]
    other_seed = tmp_path / "c"
    write_splits(SyntheticConfig(seed=8), other_seed, {"train": 4})
    assert _texts_and_pixels(other_seed, "train")[0] != train[0]


def test_parquet_dir_split_and_file(tmp_path):
    write_splits(SyntheticConfig(augment=False), tmp_path, {"train": 3, "val": 2})
    records = list(iter_records(DatasetSpec(path=str(tmp_path), split="val")))
    assert len(records) == 2
    assert all(r.image.mode == "RGB" and r.text and r.meta["split"] == "val" for r in records)
    single = list(iter_records(DatasetSpec(path=str(tmp_path / "train.parquet"))))
    assert len(single) == 3
    with pytest.raises(DataSourceError, match=r"no split 'test'.*train, val"):
        load_dataset_from_spec(DatasetSpec(path=str(tmp_path), split="test"))
    with pytest.raises(DataSourceError, match="set split"):
        load_dataset_from_spec(DatasetSpec(path=str(tmp_path)))


def test_shuffle_and_limit(tmp_path):
    write_splits(SyntheticConfig(augment=False), tmp_path, {"train": 5})
    spec = DatasetSpec(path=str(tmp_path), split="train")
    plain = [r.text for r in iter_records(spec)]
    shuffled = list(iter_records(spec.model_copy(update={"shuffle_seed": 3, "limit": 4})))
    again = list(iter_records(spec.model_copy(update={"shuffle_seed": 3, "limit": 4})))
    assert [r.text for r in shuffled] == [r.text for r in again] and len(shuffled) == 4
    assert [plain[r.meta["row"]] for r in shuffled] == [r.text for r in shuffled]  # rows named as in the source
    assert len(list(iter_records(spec.model_copy(update={"limit": 2})))) == 2


# ----------------------------------------------------------------------------- other formats, column mapping
def test_save_to_disk_latex_style_with_renamed_columns(tmp_path):
    formulas = {"train": [r"\frac{a}{b}", "x^{2}"], "validation": [r"\sqrt{y}", r"\alpha+\beta", "z_{1}"]}
    features = datasets.Features({"img": datasets.Image(), "formula": datasets.Value("string")})
    splits = {}
    for split, texts in formulas.items():
        images = [Image.new("RGB", (30 + 5 * i, 12), "white") for i in range(len(texts))]
        splits[split] = datasets.Dataset.from_dict({"img": images, "formula": texts}, features=features)
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "latex"))

    spec = DatasetSpec(path=str(tmp_path / "latex"), split="validation", columns=ColumnMap(image="img", text="formula"))
    records = list(iter_records(spec))
    assert [r.text for r in records] == formulas["validation"]
    assert [r.image.size for r in records] == [(30 + 5 * i, 12) for i in range(3)]
    assert not any(r.is_multiple_choice for r in records)
    with pytest.raises(DataSourceError, match="validation"):
        load_dataset_from_spec(spec.model_copy(update={"split": "test"}))


def test_imagefolder_aokvqa_style_multiple_choice(tmp_path):
    folder = tmp_path / "aokvqa"
    folder.mkdir()
    items = [
        ("What colour is the sign?", ["red", "blue", "green", "white"], 1),
        ("How many cars?", ["1", "2", "3", "4"], 3),
        ("Is it raining?", ["yes", "no"], 0),
    ]
    rows = []
    for i, (question, choices, correct) in enumerate(items):
        _png(folder / f"{i}.png", colour=(i * 60, 10, 10))
        rows.append({"file_name": f"{i}.png", "question": question, "choices": choices, "correct_choice_idx": correct})
    _write_jsonl(folder / "metadata.jsonl", rows)

    columns = ColumnMap(text=None, question="question", choices="choices", answer="correct_choice_idx")
    records = list(iter_records(DatasetSpec(path=str(folder), columns=columns)))
    assert [(r.question, r.choices, r.answer) for r in records] == items
    assert [r.text for r in records] == [choices[correct] for _, choices, correct in items]
    assert all(r.is_multiple_choice and r.image.mode == "RGB" for r in records)


def test_json_string_choices_and_text_answers(tmp_path):
    choices = [["cat", "dog"], ["one", "two", "three"]]
    answers = ["dog", "Three"]  # answer text (case differs in the second) -> index
    features = datasets.Features(
        {"image": datasets.Image(), "q": datasets.Value("string"), "opts": datasets.Value("string"), "gold": datasets.Value("string")}
    )
    data = {
        "image": [Image.new("RGB", (8, 8), "white")] * 2,
        "q": ["Which animal?", "How many?"],
        "opts": [json.dumps(c) for c in choices],
        "gold": answers,
    }
    path = tmp_path / "mc.parquet"
    datasets.Dataset.from_dict(data, features=features).to_parquet(str(path))
    columns = ColumnMap(text=None, question="q", choices="opts", answer="gold")
    records = list(iter_records(DatasetSpec(path=str(path), columns=columns)))
    assert [r.choices for r in records] == choices
    assert [r.answer for r in records] == [c.index(a.lower()) for c, a in zip(choices, answers)]


def test_unknown_column_lists_available(tmp_path):
    write_splits(SyntheticConfig(augment=False), tmp_path, {"train": 2})
    spec = DatasetSpec(path=str(tmp_path), split="train", columns=ColumnMap(text="formula"))
    with pytest.raises(DataSourceError) as caught:
        load_dataset_from_spec(spec)
    message = str(caught.value)
    assert str(tmp_path) in message and "'formula'" in message and "image, text" in message


def test_missing_path_and_bad_format(tmp_path):
    with pytest.raises(DataSourceError, match="no such file"):
        load_dataset_from_spec(DatasetSpec(path=str(tmp_path / "nope")))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataSourceError, match="cannot tell the dataset format"):
        load_dataset_from_spec(DatasetSpec(path=str(tmp_path / "empty_dir")))
    with pytest.raises(ValueError):
        DatasetSpec(path="x", colums={})  # extra keys are refused


def test_corrupt_image_row_is_skipped(tmp_path, caplog):
    folder = tmp_path / "imgs"
    folder.mkdir()
    texts = ["first", "broken", "third"]
    for i in range(3):
        _png(folder / f"{i}.png")
    (folder / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    _write_jsonl(folder / "metadata.jsonl", [{"file_name": f"{i}.png", "text": t} for i, t in enumerate(texts)])
    with caplog.at_level(logging.WARNING, logger="training.data.sources"):
        records = list(iter_records(DatasetSpec(path=str(folder))))
    assert [r.text for r in records] == ["first", "third"]
    assert any("row 1" in m and "unreadable image" in m for m in caplog.messages)


# ----------------------------------------------------------------------------- crops from reports
_LINES = [((40, 60), "Quarterly turbine output"), ((220, 230), "Reservoir level 42")]  # (x, y) baseline in points


def _make_pdf(path: Path) -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=400, height=300)
    for origin, text in _LINES:
        page.insert_text(origin, text, fontsize=14, fontname="helv")
    page.draw_rect(pymupdf.Rect(40, 120, 140, 180), color=None, fill=(0.1, 0.1, 0.1))  # a "picture"
    doc.save(path)
    doc.close()


def _report(source: Path, file_type: str, dpi: int, pdf_path: Path) -> DocumentReport:
    """A report as the OCR job writes it: page size and scale from the pipeline's rasterizer,
    element boxes from the PDF's own text positions (points) times that scale."""
    data = source.read_bytes()
    _, _, pages = split_pages(data, file_type, SplitLimits(dpi=dpi))
    rendered = next(iter(pages))
    pdf = pymupdf.open(pdf_path)  # the PDF the source was made from: where its text sits
    pdf_page = pdf[0]
    point_scale = rendered.width / pdf_page.rect.width  # page pixels per PDF point, for a PNG too
    elements = []
    for _, text in _LINES:
        box = pdf_page.search_for(text)[0]
        elements.append(LayoutElement(bbox=[v * point_scale for v in box], category="Text", text=text))
    elements.append(LayoutElement(bbox=[v * point_scale for v in (40, 120, 140, 180)], category="Picture", text=""))
    elements.append(LayoutElement(bbox=[v * point_scale for v in (250, 20, 390, 50)], category="Title", text="   "))
    pdf.close()
    page = PageRecord(
        page_number=1,
        width=rendered.width,
        height=rendered.height,
        scale=rendered.scale,
        ocr_pass_result=elements,
        picture_ocr_result=[PictureText(region_id=2, bbox=elements[2].bbox, text="DARK BOX")],
    )
    return DocumentReport(
        source_path=str(source),
        name=source.name,
        sha256=sha256_of_file(str(source)),
        size_bytes=len(data),
        file_type=file_type,
        page_count=1,
        pages_selected=[1],
        config_fingerprint="test",
        pages=[page],
        created_at="2024-01-01T00:00:00Z",
    )


@pytest.fixture
def report_dir(tmp_path) -> Path:
    sources, reports = tmp_path / "sources", tmp_path / "reports"
    sources.mkdir()
    (reports / "sub").mkdir(parents=True)
    pdf = sources / "doc.pdf"
    _make_pdf(pdf)
    png = sources / "scan.png"
    with pymupdf.open(pdf) as doc:
        doc[0].get_pixmap(dpi=90).save(png)
    (reports / "doc.pdf.json").write_text(_report(pdf, "pdf", 110, pdf).model_dump_json(indent=2))
    (reports / "sub" / "scan.png.json").write_text(_report(png, "png", 110, pdf).model_dump_json(indent=2))
    gone = _report(pdf, "pdf", 110, pdf).model_copy(update={"source_path": str(sources / "gone.pdf"), "name": "gone.pdf"})
    (reports / "gone.pdf.json").write_text(gone.model_dump_json())
    (reports / "summary.json").write_text(json.dumps({"documents_total": 3}))  # not a report: passed over
    return reports


def test_records_from_reports_crop_the_text(report_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="training.data.from_reports"):
        records = list(records_from_reports(report_dir))
    assert any("gone.pdf" in m and "not found" in m for m in caplog.messages)
    by_source: dict[str, list] = {}
    for record in records:
        by_source.setdefault(Path(record.meta["source"]).name, []).append(record)
    assert set(by_source) == {"doc.pdf", "scan.png"}
    for name, found in by_source.items():
        assert [r.text for r in found] == [text for _, text in _LINES], name  # Picture and blank Title left out
        for record in found:
            assert record.meta["category"] == "Text" and record.meta["page"] == 1
            assert _ink(record.image) > 0.02, f"{name}: crop of {record.text!r} holds no ink"
            x0, y0, x1, y1 = record.meta["bbox"]
            assert record.image.width >= x1 - x0 and record.image.height >= y1 - y0


def test_records_from_reports_boxes_line_up_with_pixels(report_dir):
    """A box over blank paper must crop blank paper: catches a wrong scale or page size."""
    path = report_dir / "doc.pdf.json"
    report = DocumentReport.model_validate_json(path.read_text())
    page = report.pages[0]
    blank = [v * page.scale for v in (150, 20, 390, 45)]  # above the second line, right of the first
    page.ocr_pass_result.append(LayoutElement(bbox=blank, category="Footnote", text="nothing here"))
    path.write_text(report.model_dump_json())
    crops = {r.text: r.image for r in records_from_reports(report_dir, padding_px=0) if r.meta["source"] == report.source_path}
    assert _ink(crops["nothing here"]) == 0.0
    assert all(_ink(crops[text]) > 0.02 for _, text in _LINES)


def test_records_from_reports_options(report_dir):
    pictures = list(records_from_reports(report_dir, categories=["Picture"]))
    assert pictures and all(r.text == "DARK BOX" and _ink(r.image) > 0.5 for r in pictures)
    assert len(list(records_from_reports(report_dir, max_records=1))) == 1
    longest = max(len(text) for _, text in _LINES)
    assert list(records_from_reports(report_dir, min_chars=longest + 1)) == []
    with pytest.raises(ValueError, match="unknown categories"):
        records_from_reports(report_dir, categories=["Paragraph"])


def test_changed_source_is_skipped(report_dir, caplog):
    report = DocumentReport.model_validate_json((report_dir / "doc.pdf.json").read_text())
    with open(report.source_path, "ab") as handle:
        handle.write(b"\n% appended after the OCR run\n")
    with caplog.at_level(logging.WARNING, logger="training.data.from_reports"):
        sources = {r.meta["source"] for r in records_from_reports(report_dir)}
    assert report.source_path not in sources and sources
    assert any("sha256 differs" in m for m in caplog.messages)


# ----------------------------------------------------------------------------- CLI
def test_cli_synthetic_round_trip(tmp_path, capsys):
    out = tmp_path / "syn"
    code = main(["synthetic", "--out", str(out), "--train", "3", "--val", "2", "--test", "0", "--seed", "5", "--no-augment"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "train: 3 rows" in printed and str(out / "val.parquet") in printed
    assert not (out / "test.parquet").exists()
    texts = [r.text for r in iter_records(DatasetSpec(path=str(out), split="train"))]
    assert len(texts) == 3
    assert main(["synthetic", "--out", str(out), "--kinds", "words,poems"]) == 2
    assert main(["synthetic", "--out", str(out), "--fonts", "NoSuchFont.ttf"]) == 2
    assert "NoSuchFont.ttf" in capsys.readouterr().err


def test_cli_from_reports_round_trip(report_dir, tmp_path, capsys):
    out = tmp_path / "crops"
    code = main(["from-reports", str(report_dir), "--out", str(out), "--val-fraction", "0.25", "--test-fraction", "0.25"])
    assert code == 0
    expected = sorted(r.text for r in records_from_reports(report_dir))
    read_back = []
    for path in sorted(out.glob("*.parquet")):
        records = list(iter_records(DatasetSpec(path=str(out), split=path.stem)))
        assert all(_ink(r.image) > 0.02 for r in records)
        read_back += [r.text for r in records]
    assert sorted(read_back) == expected
    counts = json.loads((out / "from_reports_config.json").read_text())["counts"]
    assert sum(counts.values()) == len(expected)
    assert main(["from-reports", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert main(["from-reports", str(report_dir), "--out", str(out), "--val-fraction", "0.6", "--test-fraction", "0.5"]) == 2
    assert main(["from-reports", str(report_dir), "--out", str(out), "--categories", "Paragraph"]) == 2
    assert "missing" in capsys.readouterr().err


def test_pitched_lines_put_the_kth_character_in_the_kth_cell() -> None:
    from training.data.synthetic import generate_lines

    config = SyntheticConfig(width=672, pitch=28, fonts=["DejaVuSansMono.ttf"], font_size=(22, 26), augment=False, seed=3)
    for image, text in generate_lines(config, "test", 8):
        assert image.size == (672, 28)
        ink = np.asarray(image.convert("L")) < 128
        inked_cells = [bool(ink[:, 28 * k + 2 : 28 * (k + 1) - 2].any()) for k in range(24)]
        assert inked_cells == [k < len(text) and not text[k].isspace() for k in range(24)], text
