"""OpenVINOSession: onnxruntime's run() on OpenVINO, the detector's sigmoid on the host, own output arrays."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from engines.rapidocr.openvino_session import OpenVINOSession, sigmoid
from engines.rapidocr.ppocr_models import ModelSet, model_set

DETECTOR_INPUT = (1, 3, 128, 160)


@pytest.fixture(scope="module")
def tiny() -> ModelSet:
    return model_set("ppocr-v6-tiny")


def _input(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * 0.8).astype(np.float32)


def _text_canvas(tiny: ModelSet) -> np.ndarray:
    """The detector's input for black words on white paper, normalised as the model set says."""
    import cv2

    from engines.rapidocr.engine import detector_input

    image = np.full((DETECTOR_INPUT[2], DETECTOR_INPUT[3], 3), 255, np.uint8)
    for row, words in enumerate(("Some words", "on a page")):
        cv2.putText(image, words, (8, 40 + 48 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
    settings = tiny.det_settings
    return detector_input(image, np.asarray(settings["det_mean"], np.float32), np.asarray(settings["det_std"], np.float32))


@pytest.mark.parametrize("precision", ["f32", "auto"])
def test_detector_sigmoid_on_host_gives_the_models_own_map(tiny: ModelSet, precision: str) -> None:
    cut = OpenVINOSession(tiny.det, threads=1, precision=precision)
    whole = OpenVINOSession(tiny.det, threads=1, precision=precision, sigmoid_on_host=False)
    (name,) = [port.name for port in cut.get_outputs()]
    assert cut.host_sigmoids == {name} and whole.host_sigmoids == frozenset()
    assert [port.name for port in whole.get_outputs()] == [name]
    x = _text_canvas(tiny)
    (ours,), (theirs,) = cut.run([name], {cut.get_inputs()[0].name: x}), whole.run(None, {"x": x})
    assert ours.shape == theirs.shape == (1, 1, *DETECTOR_INPUT[2:]) and ours.dtype == np.float32
    assert 0.0 <= ours.min() and ours.max() <= 1.0
    assert (ours > 0.5).mean() > 0.05 and (ours < 0.1).mean() > 0.5  # text found, paper not
    assert np.allclose(ours, theirs, atol=1e-6)


def test_recognizer_keeps_its_softmax_and_outputs_are_their_own(tiny: ModelSet) -> None:
    session = OpenVINOSession(tiny.rec, threads=1)
    assert session.host_sigmoids == frozenset()
    name = session.get_inputs()[0].name
    first = session.run(None, {name: _input(1, (1, 3, 48, 320))})[0]
    kept = first.copy()
    second = session.run(None, {name: _input(2, (1, 3, 48, 320))})[0]
    assert np.allclose(first.sum(axis=-1), 1.0, atol=1e-3)  # softmax over the characters
    assert not np.array_equal(first, second) and np.array_equal(first, kept)  # the next run did not overwrite it


def test_sigmoid_is_exact_and_quiet_at_the_extremes() -> None:
    logits = np.array([-1e4, -100.0, -5.0, 0.0, 3.0, 100.0, 1e4], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning from exp
        ours = sigmoid(logits)
    assert ours.dtype == np.float32 and ours is not logits
    reference = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -700, 700)))  # float64 exp fits to 709
    assert np.allclose(ours, reference, atol=1e-7)
    assert logits[0] == -1e4  # input untouched


def test_outputs_without_copies_are_views_until_the_next_run(tiny: ModelSet) -> None:
    """copy_outputs off (the engine's stages): the next run reuses the buffer, so callers decode first."""
    session = OpenVINOSession(tiny.rec, threads=1, copy_outputs=False)
    own = OpenVINOSession(tiny.rec, threads=1)
    name, x, y = session.get_inputs()[0].name, _input(1, (1, 3, 48, 320)), _input(2, (1, 3, 48, 320))
    first = session.run(None, {name: x})[0]
    assert np.allclose(first, own.run(None, {name: x})[0], atol=1e-6)
    session.run(None, {name: y})
    assert np.allclose(first, own.run(None, {name: y})[0], atol=1e-6)  # overwritten by the second run
