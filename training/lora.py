"""LoRA and QLoRA fine-tuning of the OCR vision-language models (pure model code, no Ray).

Presets fix the adapter size so that runs are comparable and a sweep only has to name
one; ``targets`` says which tower learns. Target layers are resolved to *full* module
names before peft sees them: peft's list form of ``target_modules`` matches name
suffixes, so a bare ``q_proj`` would adapt the Gemma SigLIP tower along with the
language model. The projections chosen are the attention and MLP ``nn.Linear`` layers
of the transformer blocks; output head, embeddings and the vision merger/projector stay
frozen unless listed in ``target_modules``.

Where each family's towers are is the family table's business (``vlm.families``): for
example Qwen2.5-VL ``model.visual.blocks.N`` and ``model.language_model.layers.N``, the
published dots.ocr ``vision_tower.blocks.N`` and ``model.layers.N``.

Heavy imports (torch, peft, transformers) happen inside the functions, so that
``LoraSettings`` can be validated in a job config on a machine without them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


PresetName = Literal["minimal", "standard", "high_capacity", "qlora_4bit", "qlora_8bit"]
Targets = Literal["language", "vision", "both"]

#: Install hint for the QLoRA presets (the ``qlora`` extra pins bitsandbytes).
QLORA_INSTALL_HINT = "pip install 'docvlm[qlora]' on a CUDA machine"

ADAPTER_DIR_IN_ZIP = "adapter"
MANIFEST_NAME = "docvlm_lora.json"
#: Files whose presence shows that a processor was saved with the adapter.
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


@dataclass(frozen=True)
class LoraPreset:
    r: int
    quantization: Literal["4bit", "8bit"] | None = None


PRESETS: dict[str, LoraPreset] = {
    "minimal": LoraPreset(r=4),
    "standard": LoraPreset(r=16),
    "high_capacity": LoraPreset(r=64),
    "qlora_4bit": LoraPreset(r=16, quantization="4bit"),
    "qlora_8bit": LoraPreset(r=16, quantization="8bit"),
}
DEFAULT_DROPOUT = 0.05


class QuantizationUnavailable(RuntimeError):
    """A QLoRA preset was asked for where bitsandbytes cannot run; the message says what is missing."""


class LoraSettings(BaseModel):
    """What adapter to train; unset overrides fall back to the preset (alpha defaults to 2r)."""

    model_config = ConfigDict(extra="forbid")

    preset: PresetName = Field(
        "standard", description="minimal r4 | standard r16 | high_capacity r64 | qlora_4bit | qlora_8bit (r16 on a quantized base)"
    )
    targets: Targets = Field("language", description="which tower gets adapters: language | vision | both")
    r: int | None = Field(None, ge=1, description="LoRA rank (default: the preset's)")
    alpha: float | None = Field(None, gt=0, description="LoRA alpha (default: 2 * r)")
    dropout: float | None = Field(None, ge=0, lt=1, description=f"LoRA dropout (default: {DEFAULT_DROPOUT})")
    target_modules: list[str] | None = Field(
        None,
        min_length=1,
        description="explicit layers, overriding targets: module names (peft-style suffix match), shell patterns or re:regex",
    )
    gradient_checkpointing: bool = Field(True, description="recompute activations in the backward pass (non-reentrant)")

    @property
    def rank(self) -> int:
        return self.r if self.r is not None else PRESETS[self.preset].r

    @property
    def lora_alpha(self) -> float:
        return self.alpha if self.alpha is not None else 2 * self.rank

    @property
    def lora_dropout(self) -> float:
        return self.dropout if self.dropout is not None else DEFAULT_DROPOUT

    @property
    def quantization(self) -> Literal["4bit", "8bit"] | None:
        return PRESETS[self.preset].quantization


# --- which layers -------------------------------------------------------------------------

#: Within a tower's blocks (``vlm.families``), LoRA adapts the attention and MLP projections.
LORA_LAYERS: tuple[str, ...] = ("*attn.*", "*mlp.*")


def lora_target_modules(model: nn.Module, targets: Targets) -> list[str]:
    """Full names of the attention/MLP projection Linears in the blocks of the chosen tower(s), in model order.

    The towers come from the model's family (``vlm.families``); a family whose vision tower
    has no transformer blocks (Gemma 3n's MobileNet-V5) is refused for ``vision`` and ``both``.
    """
    from torch import nn as torch_nn

    from compression.lowrank import DEFAULT_EXCLUDE, _matcher
    from vlm.families import family_of

    family = family_of(model)
    in_tower, is_projection, excluded = _matcher(family.tower_patterns(targets)), _matcher(LORA_LAYERS), _matcher(DEFAULT_EXCLUDE)
    chosen = [
        name for name, module in model.named_modules()
        if isinstance(module, torch_nn.Linear) and in_tower(name) and is_projection(name) and not excluded(name)
    ]
    if not chosen:
        raise ValueError(
            f"no {targets} attention/MLP projection layers found in {type(model).__name__} ({family.name}); "
            "list the layers in target_modules instead"
        )
    return chosen


def resolve_target_modules(model: nn.Module, settings: LoraSettings) -> list[str]:
    """``settings.target_modules`` resolved to full names when given (each entry must match), else the tower choice."""
    if not settings.target_modules:
        return lora_target_modules(model, settings.targets)
    from compression.lowrank import _matcher  # the compression toolkit's fnmatch / ``re:`` matcher

    candidates = [name for name, module in model.named_modules() if name and _is_lora_capable(module)]
    chosen: set[str] = set()
    for entry in settings.target_modules:
        patterns = [entry] if entry.startswith("re:") or any(c in entry for c in "*?[") else [entry, f"*.{entry}"]
        matches = list(filter(_matcher(patterns), candidates))
        if not matches:
            raise ValueError(f"target_modules entry {entry!r} matches no Linear, Embedding or Conv layer of {type(model).__name__}")
        chosen.update(matches)
    return [name for name in candidates if name in chosen]


def _is_lora_capable(module: Any) -> bool:
    from torch import nn

    return isinstance(module, (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d))


# --- quantization ---------------------------------------------------------------------------


def quantization_support(preset: str) -> tuple[bool, str]:
    """Whether ``preset`` can run here, and if not, exactly what is missing and how to get it."""
    bits = PRESETS[preset].quantization
    if bits is None:
        return True, f"preset {preset} trains on an unquantized base model"
    missing: list[str] = []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the bitsandbytes package is not installed")
    else:
        try:
            import bitsandbytes  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - a broken CUDA setup surfaces here
            missing.append(f"bitsandbytes fails to import ({type(exc).__name__}: {exc})")
    if importlib.util.find_spec("accelerate") is None:
        missing.append("the accelerate package is not installed")
    try:
        import torch

        if not torch.cuda.is_available():
            missing.append("no CUDA GPU is visible (torch.cuda.is_available() is False)")
    except ImportError:
        missing.append("torch is not installed")
    if missing:
        return False, f"preset {preset} loads the base model in {bits[:-3]}-bit with bitsandbytes, but {'; '.join(missing)}: {QLORA_INSTALL_HINT}"
    return True, f"preset {preset}: bitsandbytes {bits} quantization is available"


def quantization_config(settings: LoraSettings) -> Any:
    """The ``BitsAndBytesConfig`` to pass to ``from_pretrained`` for a QLoRA preset (None for the others)."""
    if settings.quantization is None:
        return None
    supported, reason = quantization_support(settings.preset)
    if not supported:
        raise QuantizationUnavailable(reason)
    import torch
    from transformers import BitsAndBytesConfig

    if settings.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def is_quantized(model: Any) -> bool:
    """Loaded with bitsandbytes (transformers sets these flags); such weights cannot be merged losslessly."""
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


# --- adapters -------------------------------------------------------------------------------


def lora_config(model: nn.Module, settings: LoraSettings) -> Any:
    """peft ``LoraConfig`` with the layers resolved against ``model``."""
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=settings.rank,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=resolve_target_modules(model, settings),
        bias="none",
    )


def apply_lora(model: nn.Module, settings: LoraSettings) -> Any:
    """Freeze ``model`` and wrap it in a ``PeftModel`` with fresh LoRA layers.

    A bitsandbytes-quantized model is first prepared by peft (norms upcast, base frozen).
    Checkpointing is non-reentrant: gradients reach the LoRA weights inside a checkpointed
    block although its inputs come from frozen embeddings, so no ``enable_input_require_grads``
    is needed for it (peft still calls it on unquantized checkpointed models; harmless).
    """
    from peft import get_peft_model, prepare_model_for_kbit_training

    config = lora_config(model, settings)
    if is_quantized(model):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if settings.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)  # the newer name; gradient_checkpointing_* is deprecated
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return get_peft_model(model, config)


def trainable_parameters(model: nn.Module) -> tuple[int, int, float]:
    """(trainable, total, percent trainable); 4-bit packed weights count as their unpacked size."""
    trainable = total = 0
    for _, param in model.named_parameters():
        count = getattr(param, "ds_numel", None) or param.numel()  # DeepSpeed ZeRO-3 shards report ds_numel
        if param.__class__.__name__ == "Params4bit":
            storage = getattr(param, "quant_storage", None)
            count *= 2 * (storage.itemsize if storage is not None else 1)
        total += count
        if param.requires_grad:
            trainable += count
    return trainable, total, (100.0 * trainable / total if total else 0.0)


def describe_trainable(model: nn.Module) -> str:
    trainable, total, percent = trainable_parameters(model)
    return f"trainable params: {trainable:,} of {total:,} ({percent:.2f}%)"


def save_adapter(peft_model: Any, out_dir: str | Path, processor: Any = None, *, merged_dir: str | Path | None = None) -> Path:
    """Save the adapter (and the processor beside it, so the folder is self-describing).

    ``merged_dir`` also writes a full model with the adapter merged in. Merging happens
    in place and last: the ``PeftModel`` then holds the merged weights and no LoRA layers.
    Merging into quantized weights would requantize them, so it is refused for QLoRA.
    """
    if merged_dir is not None and is_quantized(peft_model.get_base_model()):
        raise ValueError(
            "cannot merge into a bitsandbytes-quantized model; load the base unquantized with this adapter "
            "(vlm.loading: ModelSource(model=..., adapter=..., merge_adapter=True)) and save that"
        )
    out_dir = Path(out_dir)
    peft_model.save_pretrained(out_dir)
    if processor is not None:
        processor.save_pretrained(out_dir)
    if merged_dir is not None:
        merged = peft_model.merge_and_unload()
        merged.save_pretrained(merged_dir)
        if processor is not None:
            processor.save_pretrained(merged_dir)
    return out_dir


__all__ = [
    "LoraSettings",
    "is_quantized",
    "lora_config",
    "PRESETS",
    "QuantizationUnavailable",
    "apply_lora",
    "describe_trainable",
    "lora_target_modules",
    "quantization_config",
    "quantization_support",
    "resolve_target_modules",
    "save_adapter",
    "trainable_parameters",
]
