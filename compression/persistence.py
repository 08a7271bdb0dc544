"""Save and load low-rank compressed models: ``save_pretrained`` plus a small JSON of the ranks.

A compressed checkpoint is an ordinary transformers folder (config, safetensors,
processor) whose weights hold ``...q_proj.down.weight``/``...q_proj.up.weight`` pairs
instead of ``...q_proj.weight``, plus ``lowrank_ranks.json``. ``load_compressed``
builds the architecture from the config, swaps the listed layers for ``LowRankLinear``
of the saved ranks, and loads the saved tensors: no SVD at load time, and the outputs
are bit-for-bit those of the saved model. The OCR engines call it whenever a model
folder holds the ranks file (``vlm.loading``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compression.lowrank import CompressionStats, LowRankLinear, _set_submodule, low_rank_layers

RANKS_FILE = "lowrank_ranks.json"
FORMAT_VERSION = 1


def is_compressed_checkpoint(path: str | Path) -> bool:
    return (Path(path) / RANKS_FILE).is_file()


def save_compressed(model: nn.Module, processor: Any | None, path: str | Path, stats: CompressionStats | None = None) -> Path:
    """Write the model (safetensors), its processor if given, and the ranks file."""
    path = Path(path)
    layers = low_rank_layers(model)
    if not layers:
        raise ValueError("model has no LowRankLinear layers: compress it first (compression.lowrank.compress)")
    model.save_pretrained(path)
    if processor is not None:
        processor.save_pretrained(path)
    payload = {
        "format_version": FORMAT_VERSION,
        "ratio": stats.ratio if stats else None,
        "method": stats.method if stats else None,
        "ranks": {name: module.rank for name, module in layers.items()},
        "shapes": {name: [module.in_features, module.out_features, module.up.bias is not None] for name, module in layers.items()},
    }
    (path / RANKS_FILE).write_text(json.dumps(payload, indent=2))
    return path


def _renames(model: nn.Module) -> bool:
    try:
        from transformers.core_model_loading import revert_weight_conversion  # noqa: F401
    except ImportError:  # older transformers save under the model's own names
        return False
    return True


def _saved_names(model: nn.Module) -> dict[str, str]:
    """Saved name -> model name: ``save_pretrained`` writes some architectures under legacy names
    (Qwen2.5-VL: ``model.visual.*`` as ``visual.*``); ask transformers how, one key at a time."""
    from transformers.core_model_loading import revert_weight_conversion

    names = {}
    for key, tensor in model.state_dict().items():
        (saved,) = revert_weight_conversion(model, {key: tensor}).keys()
        names[saved] = key
    return names


def load_compressed(path: str | Path, model_class: Any = None, **from_pretrained_kwargs: Any) -> nn.Module:
    """Load a compressed checkpoint saved by ``save_compressed`` (kwargs: dtype, device_map, attn_implementation)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForImageTextToText

    path = Path(path)
    if not is_compressed_checkpoint(path):
        raise FileNotFoundError(f"{path} is not a compressed checkpoint ({RANKS_FILE} missing)")
    try:
        spec = json.loads((path / RANKS_FILE).read_text())
        ranks: dict[str, int] = spec["ranks"]
        shapes: dict[str, list] = spec["shapes"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise ValueError(f"{path / RANKS_FILE} is not a valid ranks file: {exc}") from exc
    if spec.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path / RANKS_FILE} has format_version {spec.get('format_version')}, expected {FORMAT_VERSION}")
    model_class = model_class or AutoModelForImageTextToText
    trust = bool(from_pretrained_kwargs.pop("trust_remote_code", False))
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust)
    dtype = from_pretrained_kwargs.pop("dtype", None) or from_pretrained_kwargs.pop("torch_dtype", None)
    device_map = from_pretrained_kwargs.pop("device_map", None)
    attn = from_pretrained_kwargs.pop("attn_implementation", None)
    build_kwargs: dict[str, Any] = {"trust_remote_code": trust}
    if attn:
        build_kwargs["attn_implementation"] = attn
    model = model_class.from_config(config, **build_kwargs)
    for name, rank in ranks.items():
        try:
            layer = model.get_submodule(name)
        except AttributeError as exc:
            raise ValueError(f"{path}: layer {name} listed in {RANKS_FILE} does not exist in a {config.model_type} model") from exc
        in_features, out_features, bias = shapes[name]
        if not isinstance(layer, nn.Linear) or (layer.in_features, layer.out_features) != (in_features, out_features):
            raise ValueError(f"{path}: layer {name} is not a {in_features}->{out_features} Linear in this architecture")
        _set_submodule(model, name, LowRankLinear(in_features, out_features, rank, bias))
    state: dict[str, torch.Tensor] = {}
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path} holds no .safetensors weights")
    for file in files:
        state.update(load_file(str(file)))
    if _renames(model):
        names = _saved_names(model)
        state = {names.get(key, key): tensor for key, tensor in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [key for key in missing if key not in tied and not key.endswith("lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the compressed architecture (missing {missing[:5]}, unexpected {unexpected[:5]})")
    if getattr(config, "tie_word_embeddings", False) or getattr(getattr(config, "text_config", None), "tie_word_embeddings", False):
        model.tie_weights()
    if dtype is not None:
        model = model.to(dtype)
    if device_map is not None:
        model = model.to(device_map if isinstance(device_map, (str, torch.device)) else "cuda")
    return model.eval()
