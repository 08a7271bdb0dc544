"""Line recognition in a few input shapes: widths rounded up to a few per doubling, lines of one width batched.

RapidOCR feeds the recognizer one tensor per batch, as wide as the batch's widest line
scaled to the model's height. Every line of a page has its own width, so nearly every
call has a shape the runtime has not seen: OpenVINO's CPU plugin then prepares its
kernels for the new shape, about 9 ms a line on top of 4 ms of compute, and onnxruntime
re-plans its memory. Rounding each width up to one of ``buckets`` widths per doubling
(at most an eighth more by default) leaves a few dozen shapes, all prepared after a page
or two: a dense scanned page's lines read about 2.5x faster (docs/benchmarks.md). Lines
whose rounded widths are equal go in one batch of up to ``batch`` lines, which pads none
of them further.

Each line is scaled as RapidOCR's ``TextRecognizer.resize_norm_img`` scales it and padded
with the model's zero, as RapidOCR and PaddleOCR's training pad (padding with the paper's
colour read worse); only the padded width differs. The padding is relative to the line,
not a fixed step: 64 blank columns after a short word were read as letters ("RepOt").
Decoding is RapidOCR's own ``CTCLabelDecode``, told each line's share of the padded width,
so word boxes stay in the line's own columns.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import cv2
import numpy as np


def line_width(height: int, width: int, model_height: int, min_width: int) -> int:
    """RapidOCR's input width for this line alone: scaled to ``model_height``, at least ``min_width``."""
    return int(model_height * max(min_width / model_height, width / height))


def padded_width(height: int, width: int, model_height: int, min_width: int, buckets: int) -> int:
    """Input width of a ``height`` x ``width`` line: its ``line_width`` rounded up to one of ``buckets`` widths
    per doubling (steps of 1/``buckets`` of the power of two below it; 0: not rounded)."""
    exact = line_width(height, width, model_height, min_width)
    if buckets <= 0:
        return exact
    step = max(1, (1 << (exact.bit_length() - 1)) // buckets)
    return step * math.ceil(exact / step)


def line_tensor(crop: np.ndarray, model_height: int, min_width: int, width: int) -> np.ndarray:
    """One line as the recognizer reads it: (C, model_height, width) float32 in [-1, 1], zero-padded on the right.

    Scaled as RapidOCR scales it for a batch of its own (``line_width``), then padded on to ``width``.
    """
    height, crop_width = crop.shape[:2]
    resized_width = min(math.ceil(model_height * crop_width / height), line_width(height, crop_width, model_height, min_width))
    resized = cv2.resize(crop, (resized_width, model_height)).astype(np.float32)
    tensor = np.zeros((crop.shape[2], model_height, width), dtype=np.float32)
    tensor[:, :, :resized_width] = resized.transpose(2, 0, 1) * (2.0 / 255.0) - 1.0  # (x / 255 - 0.5) / 0.5
    return tensor


def recognize_lines(recognizer: Any, crops: Sequence[np.ndarray], *, min_width: int, width_buckets: int, batch: int,
                    return_word_box: bool) -> list[Any]:
    """RapidOCR's per-line results (text, score[, word info]) for ``crops`` (BGR), in their order.

    ``recognizer`` is RapidOCR's ``TextRecognizer``: its ``session`` runs the model, its
    ``postprocess_op`` decodes, its ``rec_image_shape`` gives the model's height.
    """
    model_height = recognizer.rec_image_shape[1]
    widths = [padded_width(crop.shape[0], crop.shape[1], model_height, min_width, width_buckets) for crop in crops]
    groups: list[list[int]] = []
    for index in sorted(range(len(crops)), key=lambda i: widths[i]):
        if groups and widths[groups[-1][0]] == widths[index] and len(groups[-1]) < batch:
            groups[-1].append(index)
        else:
            groups.append([index])
    results: list[Any] = [None] * len(crops)
    for group in groups:
        width = widths[group[0]]
        inputs = np.stack([line_tensor(crops[i], model_height, min_width, width) for i in group])
        predictions = recognizer.session(inputs)[0]
        decoded = recognizer.postprocess_op(
            predictions, return_word_box,
            wh_ratio_list=[crops[i].shape[1] / crops[i].shape[0] for i in group], max_wh_ratio=width / model_height,
        )
        for index, result in zip(group, decoded):
            results[index] = result
    return results
