"""One sweep trial without Ray: build the point's model, score it, count its FLOPs per page.

What a trial measures, in order:

1. the model: the original for ratio 1, else the PELA-compressed copy for (ratio, parts),
   computed once per sweep and saved under ``RUN/models/`` (a file lock makes a second
   trial of the same (ratio, parts) wait and load it instead of factoring again), so the
   pooling and resolution axes reuse the SVD factors;
2. the processor's pixel budget (``max_pixels``) and the token pooling, installed the way
   the OCR engine installs them (``engines.generative.backends.install_pooling``);
3. accuracy on the held-out rows: 1 - CER of greedy transcriptions, or multiple-choice
   accuracy by likelihood (``training.evaluate``), and the mean output length in tokens;
4. FLOPs per page with ``compression.flops.count_flops``, one page at a time:
   vision encoder + prefill + per-decoded-token FLOPs x the measured mean output length;
5. parameters and seconds per page of the evaluation.

Results and an execution log live under ``RUN/trials/``: a point whose result is on disk
is answered from it, which is what makes a resumed sweep redo no finished trial even when
Ray Tune's own state missed the last completions before a kill.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import statistics
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from pydantic import BaseModel, ConfigDict, Field

from configuration.plugins import Plugin
from documents.writer import atomic_write_json
from training.settings import TrainSettings
from tune.settings import EvalSettings
from tune.space import TrialPoint

COMPRESSION_FILE = "compression.json"


class TrialSpec(BaseModel):
    """Everything a trial needs, as plain data with absolute paths (Tune runs trials in their own folders)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str
    run_dir: str
    model: str  # absolute path or hub id
    data: str
    dtype: str = "auto"
    trust_remote_code: bool = False
    eval: EvalSettings = Field(default_factory=EvalSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    cpus: float = 1.0
    gpus: float = 0.0
    before_trial: list[Plugin] = Field(default_factory=list)  # built and called with point= before each trial runs

    @property
    def trials_dir(self) -> Path:
        return Path(self.run_dir) / "trials"

    @property
    def models_dir(self) -> Path:
        return Path(self.run_dir) / "models"


# --------------------------------------------------------------------------- results on disk
def result_path(spec: TrialSpec, point: TrialPoint) -> Path:
    return spec.trials_dir / f"{point.key}.json"


def executions_path(spec: TrialSpec, point: TrialPoint) -> Path:
    return spec.trials_dir / f"{point.key}.runs"


def cached_result(spec: TrialSpec, point: TrialPoint) -> dict[str, Any] | None:
    path = result_path(spec, point)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a torn write: compute again


def save_result(spec: TrialSpec, point: TrialPoint, metrics: dict[str, Any]) -> None:
    atomic_write_json(result_path(spec, point), metrics)


def record_execution(spec: TrialSpec, point: TrialPoint) -> None:
    """Append one line per real computation of a point (the resume tests count them)."""
    path = executions_path(spec, point)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"started": time.time(), "host": socket.gethostname(), "pid": os.getpid()})
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def execution_count(spec: TrialSpec, point: TrialPoint) -> int:
    path = executions_path(spec, point)
    return len(path.read_text().splitlines()) if path.is_file() else 0


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (and nodes, on storage with POSIX locks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- models
def device_for(spec: TrialSpec) -> str:
    import torch

    torch.set_num_threads(max(1, int(spec.cpus)))
    return "cuda" if spec.gpus > 0 and torch.cuda.is_available() else "cpu"


def load_model(spec: TrialSpec, path: str, device: str) -> tuple[Any, Any]:
    """A checkpoint (compressed ones included) with sdpa attention, which the FLOP counter counts."""
    from vlm.loading import ModelSource, load_model_and_processor

    source = ModelSource(model=path, dtype=spec.dtype, attn_implementation="sdpa", device_map=None, trust_remote_code=spec.trust_remote_code)
    model, processor = load_model_and_processor(source, "layout")  # the OCR model a sweep compresses (vlm.families)
    return model.to(device).eval(), processor


def compressed_model(spec: TrialSpec, point: TrialPoint, device: str) -> str:
    """The folder of the point's compressed model, made on first use; the original model for ratio 1."""
    if point.ratio == 1.0:
        return spec.model
    from compression.persistence import is_compressed_checkpoint

    target = spec.models_dir / point.model_key
    with file_lock(target.with_name(target.name + ".lock")):
        if is_compressed_checkpoint(target) and (target / COMPRESSION_FILE).is_file():
            return str(target)
        _compress_to(spec, point, device, target)
    return str(target)


def _compress_to(spec: TrialSpec, point: TrialPoint, device: str, target: Path) -> None:
    from compression.lowrank import compress, select_linear_layers
    from compression.persistence import save_compressed

    distill = spec.train.distill.model_copy(update={"ratio": point.ratio, "target_modules": point.preset})
    model, processor = load_model(spec, spec.model, device)
    calibration = None
    if distill.calibration != "none":  # activation-aware SVD, as the distillation job does it
        from compression.calibration import calibrate
        from training.batches import calibration_batches

        names = select_linear_layers(model, point.preset, distill.exclude())
        batches = calibration_batches(spec.data, spec.train)(processor)
        calibration = calibrate(model, batches, names, method=distill.calibration, device=device)
    started = time.perf_counter()
    stats = compress(model, calibration=calibration, **distill.compress_kwargs())  # min_rank / max_rank from train.distill
    seconds = time.perf_counter() - started
    temporary = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    if temporary.exists():
        shutil.rmtree(temporary)
    save_compressed(model, processor, temporary, stats)
    summary = {k: v for k, v in stats.to_dict().items() if k not in ("layers", "skipped")}
    (temporary / COMPRESSION_FILE).write_text(json.dumps({**summary, "svd_seconds": seconds}, indent=2) + "\n")
    if target.exists():
        shutil.rmtree(target)
    temporary.rename(target)


def compression_summary(model_path: str) -> dict[str, Any]:
    """``compression.json`` of a compressed folder (a distilled model: of the folder it came from), or {}."""
    file = Path(model_path) / COMPRESSION_FILE
    return json.loads(file.read_text()) if file.is_file() else {}


def prepare(spec: TrialSpec, point: TrialPoint, model_path: str, device: str) -> tuple[Any, Any, dict[str, Any]]:
    """Load the model, set the pixel budget, install pooling (as the OCR engine does); returns the effective budget too."""
    from compression.resolution import pixel_budget, set_pixel_budget
    from engines.generative.backends import install_pooling

    model, processor = load_model(spec, model_path, device)
    low, high = pixel_budget(processor)
    if point.max_pixels is not None:
        low, high = set_pixel_budget(processor, min(low, point.max_pixels), point.max_pixels)
    model, processor = install_pooling(model, processor, point.pooling_options, model_path)
    return model, processor, {"budget_min_pixels": low, "budget_max_pixels": high}


# --------------------------------------------------------------------------- measuring
def load_records(spec: TrialSpec) -> list[Any]:
    from training.data.sources import DatasetSpec, iter_records

    records = list(iter_records(DatasetSpec(path=spec.data, split=spec.eval.split, limit=spec.eval.limit, columns=spec.train.data.columns)))
    if not records:
        raise ValueError(f"data {spec.data} split {spec.eval.split}: no usable records")
    return records


def _token_count(processor: Any, text: str) -> int:
    return len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])


def score(spec: TrialSpec, model: Any, processor: Any, records: Sequence[Any]) -> dict[str, Any]:
    """Accuracy (per ``eval.metric``), its parts, and the mean output length in tokens (end token included)."""
    from training.evaluate import evaluate_records, gold_choice, predict_texts
    from training.metrics import OcrScores

    data = spec.train.data
    ocr = [r for r in records if not r.is_multiple_choice]
    mc = [r for r in records if r.is_multiple_choice]
    out: dict[str, Any] = {}
    lengths: list[int] = []
    if ocr:
        predictions = predict_texts(model, processor, ocr, batch_size=spec.eval.batch_size, max_new_tokens=data.max_new_tokens, prompt=data.prompt)
        scores = OcrScores.compute(predictions, [r.text for r in ocr], normalize=True)
        out.update(char_accuracy=scores.char_accuracy, cer=scores.cer, exact_match=scores.exact_match)
        lengths += [min(_token_count(processor, p) + 1, data.max_new_tokens) for p in predictions]
    if mc:
        results = evaluate_records(model, processor, mc, batch_size=spec.eval.batch_size, prompt=data.prompt)
        out["mc_accuracy"] = results["multiple_choice"]["accuracy"]
        lengths += [_token_count(processor, r.choices[gold_choice(r)]) + 1 for r in mc]
    metric = spec.eval.metric
    if metric == "auto":
        metric = "char_accuracy" if ocr else "mc_accuracy"
    if metric not in out:
        raise ValueError(f"eval.metric {metric}: the split {spec.eval.split} has no records it applies to")
    out.update(accuracy=out[metric], accuracy_metric=metric, records=len(records), mean_output_tokens=statistics.fmean(lengths))
    return out


def reference_output_tokens(spec: TrialSpec, processor: Any, records: Sequence[Any]) -> float:
    """Mean target length in tokens (+ end token): the decode length assumed before a model has been scored."""
    texts = [r.choices[r.answer or 0] if r.is_multiple_choice else r.text for r in records]
    return statistics.fmean(min(_token_count(processor, t) + 1, spec.train.data.max_new_tokens) for t in texts)


def page_flops(spec: TrialSpec, model: Any, processor: Any, records: Sequence[Any], output_tokens: float) -> dict[str, Any]:
    """Measured FLOPs per page (FlopCounterMode), one page at a time over the first ``eval.flops_pages`` records."""
    from compression.flops import count_flops
    from training.examples import Example, encode_batch

    decode_steps = max(1, min(32, round(output_tokens)))
    reports = []
    for record in records[: spec.eval.flops_pages]:
        example = Example(record.image, prompt=record.question or spec.train.data.prompt)
        reports.append(count_flops(model, encode_batch(processor, [example], padding_side="left"), decode_tokens=decode_steps))
    vision = statistics.fmean(r.vision.measured for r in reports)
    prefill = statistics.fmean(r.prefill.measured for r in reports)
    per_token = statistics.fmean(r.decode_per_token.measured for r in reports)
    return {
        "flops_per_page": vision + prefill + per_token * output_tokens,
        "vision_flops": vision,
        "prefill_flops": prefill,
        "decode_flops_per_token": per_token,
        "visual_tokens": statistics.fmean(r.visual_tokens for r in reports),
        "prompt_tokens": statistics.fmean(r.prompt_tokens for r in reports),
    }


def evaluate_point(spec: TrialSpec, point: TrialPoint, model_path: str, device: str) -> dict[str, Any]:
    """Every metric of one point on ``model_path`` (the compressed or distilled model)."""
    model, processor, budget = prepare(spec, point, model_path, device)
    records = load_records(spec)
    started = time.perf_counter()
    scores = score(spec, model, processor, records)
    seconds = time.perf_counter() - started
    flops = page_flops(spec, model, processor, records, scores["mean_output_tokens"])
    compression = compression_summary(model_path)
    return {
        **point.as_dict(),
        "key": point.key,
        **scores,
        **flops,
        "params": sum(p.numel() for p in model.parameters()),
        "seconds_per_page": seconds / len(records),
        "eval_seconds": seconds,
        "device": device,
        "model_dir": model_path,
        **budget,
        "kept_fraction": compression.get("kept_fraction", 1.0),
        "mean_relative_error": compression.get("mean_relative_error", 0.0),
        "phase": "final",
    }


def flops_estimate(spec: TrialSpec, point: TrialPoint, model_path: str, device: str) -> dict[str, Any]:
    """FLOPs per page before the model has been scored (decode length = the references'): for intermediate reports."""
    model, processor, _ = prepare(spec, point, model_path, device)
    records = load_records(spec)[: spec.eval.flops_pages]
    return page_flops(spec, model, processor, records, reference_output_tokens(spec, processor, records))


def distill_settings(spec: TrialSpec, point: TrialPoint) -> TrainSettings:
    """``train`` settings for a short PELA distillation of this point (ratio, parts, steps from the point)."""
    settings = spec.train.model_copy(deep=True)
    settings.trust_remote_code = spec.trust_remote_code
    steps = point.distill_steps
    settings.distill = settings.distill.model_copy(update={"ratio": point.ratio, "target_modules": point.preset})
    settings.optim = settings.optim.model_copy(
        update={"max_steps": steps, "epochs": None, "warmup_steps": min(settings.optim.warmup_steps, steps // 10)}
    )  # the point's steps, not train.optim.epochs
    settings.checkpoint = settings.checkpoint.model_copy(
        update={"every_steps": min(settings.checkpoint.every_steps, steps), "storage_path": str(Path(spec.run_dir) / "distill")}
    )
    settings.data = settings.data.model_copy(update={"eval_samples": max(1, settings.data.eval_samples)})
    return settings


def distilled_dir(spec: TrialSpec, point: TrialPoint) -> Path:
    return spec.models_dir / point.distill_key
