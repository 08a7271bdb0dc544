"""Build what each training job trains: model, processor, objective and how to save it.

Pure model code (no Ray): the Ray Train loop asks for a ``Trainable`` by job kind and
treats them all alike. Every rank builds the same thing (fixed seeds, deterministic SVD),
and DeepSpeed broadcasts rank 0's parameters at initialisation anyway.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import torch
from torch import nn

from training.objectives import DistillObjective, Objective, TaskObjective
from training.settings import TrainSettings

JobKind = Literal["reference", "distill", "lora"]

@dataclass
class Trainable:
    model: nn.Module  # the module the optimiser updates (its trainable parameters)
    processor: Any
    objective: Objective
    save: Callable[[Path], None]  # writes the final artifact that the OCR engines load
    info: dict[str, Any] = field(default_factory=dict)
    frozen: list[nn.Module] = field(default_factory=list)  # modules to move to the device but never train


def load_pretrained(
    path: str,
    device: torch.device | str = "cpu",
    *,
    adapter: str | None = None,
    quantization_config: Any = None,
    trust_remote_code: bool = False,
) -> tuple[nn.Module, Any]:
    """A checkpoint of any family of ``vlm.families``, through the loader the OCR engines use (errors name the path).

    With ``quantization_config`` (QLoRA) bitsandbytes places the weights on ``device`` itself.
    """
    from vlm.loading import ModelSource, load_model_and_processor

    source = ModelSource(
        model=path, dtype="float32", device_map=None, attn_implementation="sdpa", adapter=adapter, trust_remote_code=trust_remote_code
    )
    if quantization_config is not None:
        extra = {"quantization_config": quantization_config, "device_map": {"": str(device)}, "dtype": torch.bfloat16}
        return load_model_and_processor(source, extra_model_kwargs=extra)
    model, processor = load_model_and_processor(source)
    return model.to(device), processor


def reference_trainable(settings: TrainSettings) -> Trainable:
    """A fresh, randomly initialised small Qwen2.5-VL with a byte-level tokenizer built here."""
    from vlm.tiny import build_tiny_qwen2_5_vl

    model, processor = build_tiny_qwen2_5_vl(**settings.reference.shape(), seed=settings.optim.seed)
    model.train()

    def save(out: Path) -> None:
        model.save_pretrained(out)
        processor.save_pretrained(out)

    return Trainable(model, processor, TaskObjective(), save, info={"params": sum(p.numel() for p in model.parameters())})


def distill_trainable(
    teacher_path: str, settings: TrainSettings, calibration_batches: Callable[[Any], Iterable[dict[str, Any]]] | None = None
) -> Trainable:
    """Teacher = the checkpoint, frozen; student = its PELA-compressed copy, trained to match it.

    ``calibration_batches(processor)`` yields encoded batches for activation-aware SVD.
    """
    from compression.calibration import calibrate
    from compression.lowrank import compress, select_linear_layers
    from compression.persistence import save_compressed
    from compression.report import write_compression_report

    distill = settings.distill
    teacher, processor = load_pretrained(teacher_path, trust_remote_code=settings.trust_remote_code)
    teacher.eval().requires_grad_(False)
    student = copy.deepcopy(teacher)
    calibration = None
    if distill.calibration != "none":
        if calibration_batches is None:
            raise ValueError("activation-aware compression needs calibration batches")
        names = select_linear_layers(student, distill.target_modules, distill.exclude())
        calibration = calibrate(teacher, calibration_batches(processor), names, method=distill.calibration)
    stats = compress(student, calibration=calibration, **distill.compress_kwargs())
    student.train()
    set_trainable(student, distill.trainable)

    def save(out: Path) -> None:
        save_compressed(student, processor, out, stats)
        write_compression_report(stats, out, title=f"PELA student of {teacher_path}, ratio {distill.ratio:g}")

    objective = DistillObjective(teacher, student, distill.weights, distill.task_weight)
    trainable = sum(p.numel() for p in student.parameters() if p.requires_grad)
    info = {
        "compression": {k: v for k, v in stats.to_dict().items() if k != "layers"},
        "trainable": distill.trainable,
        "trainable_params": trainable,
    }
    return Trainable(student, processor, objective, save, info=info, frozen=[teacher])


def set_trainable(student: torch.nn.Module, which: str) -> None:
    """``all``: every parameter trains; ``lowrank``: only the ``LowRankLinear`` layers (their factors and bias)."""
    from compression.lowrank import low_rank_layers

    student.requires_grad_(which == "all")
    if which == "lowrank":
        layers = low_rank_layers(student)
        if not layers:
            raise ValueError("trainable: lowrank, but no layer was compressed (nothing would train)")
        for layer in layers.values():
            layer.requires_grad_(True)


def lora_trainable(base_path: str, settings: TrainSettings, merged: bool = False, device: torch.device | str = "cpu") -> Trainable:
    """The base checkpoint with LoRA adapters (peft); only the adapters train.

    QLoRA presets load the base in 4 or 8 bits, which needs bitsandbytes and CUDA; where
    they are missing this raises ``QuantizationUnavailable`` saying what is missing.
    """
    from training.lora import apply_lora, describe_trainable, quantization_config, save_adapter, trainable_parameters

    lora = settings.lora
    base, processor = load_pretrained(
        base_path, device, quantization_config=quantization_config(lora), trust_remote_code=settings.trust_remote_code
    )
    model = apply_lora(base, lora)
    model.train()
    trainable, total, percent = trainable_parameters(model)

    def save(out: Path) -> None:
        save_adapter(model, out / "adapter", processor, merged_dir=out / "merged" if merged else None)

    info = {"trainable_params": trainable, "total_params": total, "trainable_percent": percent, "summary": describe_trainable(model)}
    return Trainable(model, processor, TaskObjective(), save, info=info)


