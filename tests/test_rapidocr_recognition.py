"""Line recognition in a few input shapes (``engines.rapidocr.recognition``) on the real recognizer and real lines.

The lines are the generated scanned sample's, read by the engine's detector; the
reference is RapidOCR's own ``TextRecognizer`` call, one line per batch, as RapidOCR
prepares its input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pymupdf
import pytest
from rapidfuzz.distance import Levenshtein

from engines.rapidocr.engine import RapidOCREngine
from engines.rapidocr.lines import crop_quad, to_bgr
from engines.rapidocr.options import RapidOCROptions
from engines.rapidocr.recognition import line_tensor, padded_width, recognize_lines
from samples.generate import generate


@pytest.fixture(scope="module")
def engine() -> RapidOCREngine:
    return RapidOCREngine(RapidOCROptions(threads=1))


@pytest.fixture(scope="module")
def crops(engine: RapidOCREngine, tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    png: Path = generate(tmp_path_factory.mktemp("recognition_samples"))["png"]
    pix = pymupdf.Pixmap(str(png))
    bgr = to_bgr(np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width, pix.n)[:, :, :3])
    return [crop_quad(bgr, quad) for quad in engine.detect(bgr[:, :, ::-1])]


class ShapeLog:
    """The recognizer's session, recording every input shape it is given."""

    def __init__(self, session) -> None:
        self.session, self.shapes = session, []

    def __call__(self, inputs: np.ndarray):
        self.shapes.append(inputs.shape)
        return self.session(inputs)


def test_padded_width_scales_to_the_model_height_and_rounds_up() -> None:
    assert padded_width(24, 240, 48, 160, 8) == 480  # 480 scaled: a multiple of 256 / 8
    assert padded_width(24, 242, 48, 160, 8) == 512  # 484 scaled, rounded up in steps of 32
    assert padded_width(24, 40, 48, 160, 8) == 160  # 80 scaled, at least 160 (a multiple of 128 / 8)
    assert padded_width(24, 42, 48, 170, 8) == 176  # at least 170, rounded up in steps of 16
    assert padded_width(24, 242, 48, 160, 0) == 484


def test_line_tensor_is_rapidocrs_input_padded_further(engine: RapidOCREngine, crops: list[np.ndarray]) -> None:
    recognizer = engine._ocr.text_rec
    crop = max(crops, key=lambda c: c.shape[1] / c.shape[0])
    ratio = crop.shape[1] / crop.shape[0]
    theirs = recognizer.resize_norm_img(crop, max(ratio, 160 / 48))
    ours = line_tensor(crop, 48, 160, padded_width(*crop.shape[:2], 48, 160, 8) + 40)
    assert ours.shape[2] > theirs.shape[2]
    np.testing.assert_allclose(ours[:, :, : theirs.shape[2]], theirs, atol=1e-6)
    assert not ours[:, :, theirs.shape[2]:].any()  # the padding is the model's zero, as RapidOCR pads


def test_unrounded_lines_read_exactly_as_rapidocr_reads_them(crops: list[np.ndarray]) -> None:
    """In f32: our tensors differ from RapidOCR's by float rounding (1e-7), which bf16 can turn into a borderline
    glyph ("Capacity MW" / "Mw" on one AVX512_BF16 CPU, not on another)."""
    recognizer = RapidOCREngine(RapidOCROptions(threads=1, precision="f32"))._ocr.text_rec
    theirs = [result[0] for result in recognizer(crops)[0]]  # one line per batch (rec_batch_num=1)
    ours = recognize_lines(recognizer, crops, min_width=160, width_buckets=0, batch=1, return_word_box=False)
    assert len(crops) >= 15 and [result[0] for result in ours] == theirs


def test_rounded_widths_give_few_shapes_and_the_same_text(engine: RapidOCREngine, crops: list[np.ndarray]) -> None:
    recognizer = engine._ocr.text_rec
    theirs = [result[0] for result in recognizer(crops)[0]]
    log = ShapeLog(recognizer.session)
    recognizer.session = log
    try:
        ours = recognize_lines(recognizer, crops, min_width=160, width_buckets=8, batch=4, return_word_box=True)
    finally:
        recognizer.session = log.session
    texts = [result[0] for result in ours]
    # the padding is blank: a letter here and there, no more
    assert Levenshtein.normalized_distance("\n".join(texts), "\n".join(theirs)) < 0.01
    assert sum(a == b for a, b in zip(texts, theirs)) >= 0.9 * len(theirs)
    # every width one of 8 per doubling (so at most 33 from 160 to 4096 px), lines of one width batched
    bucketed = {step * k for step in (16, 32, 64, 128, 256) for k in range(8, 16)}
    assert {shape[3] for shape in log.shapes} <= bucketed and len(log.shapes) < len(crops)
    for result, crop in zip(ours, crops):  # word columns in the line's own width, not the padded one
        columns, characters = result[2][0], sum(len(word) for word in result[2][2])
        assert columns <= crop.shape[1] / crop.shape[0] * 48 / 8 + 1 and (characters > 0) == bool(result[0])


def test_no_lines(engine: RapidOCREngine) -> None:
    assert recognize_lines(engine._ocr.text_rec, [], min_width=160, width_buckets=8, batch=4, return_word_box=False) == []
