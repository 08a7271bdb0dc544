"""Save and load low-rank compressed models: an ordinary ``save_pretrained`` folder plus the ranks.

A compressed checkpoint is a transformers folder (config, safetensors, processor) whose
weights hold ``...q_proj.down.weight``/``...q_proj.up.weight`` pairs instead of
``...q_proj.weight``, plus ``lowrank_ranks.json``::

    {"format_version": 1, "ratio": 3.0, "method": "whiten", "model_type": "qwen2_5_vl",
     "ranks": {"model.language_model.layers.0.self_attn.q_proj": 21, ...},
     "layers": {"model.language_model.layers.0.self_attn.q_proj":
                {"in_features": 64, "out_features": 64, "rank": 21, "bias": true}, ...}}

``load_compressed`` lets transformers' own ``from_pretrained`` do the loading (weights
created empty then filled, checkpoint key renames, ``dtype``, ``device_map``,
``attn_implementation``, tied weights) with one change: right after the architecture is
built, the listed layers are swapped for ``LowRankLinear`` of the saved ranks. No SVD
at load time, no random initialisation, and the outputs are bit-for-bit those of the
saved model. The OCR engines call it whenever ``is_compressed_checkpoint`` says so
(``vlm.loading``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from compression.lowrank import CompressionStats, LowRankLinear, low_rank_layers, set_submodule

RANKS_FILE = "lowrank_ranks.json"
FORMAT_VERSION = 1


def is_compressed_checkpoint(path: str | Path) -> bool:
    """True when ``path`` is a folder holding ``lowrank_ranks.json``."""
    return (Path(path) / RANKS_FILE).is_file()


def save_compressed(model: nn.Module, processor: Any | None, path: str | Path, stats: CompressionStats | None = None) -> Path:
    """Write ``model.save_pretrained(path)`` (safetensors), the processor if given, and the ranks file."""
    path = Path(path)
    layers = low_rank_layers(model)
    if not layers:
        raise ValueError("model has no LowRankLinear layers: compress it first (compression.lowrank.compress)")
    model.save_pretrained(path, safe_serialization=True)
    if processor is not None:
        processor.save_pretrained(path)
    spec = {
        "format_version": FORMAT_VERSION,
        "ratio": stats.ratio if stats else None,
        "method": stats.method if stats else None,
        "model_type": getattr(getattr(model, "config", None), "model_type", None),
        "ranks": {name: layer.rank for name, layer in layers.items()},
        "layers": {
            name: {"in_features": layer.in_features, "out_features": layer.out_features, "rank": layer.rank, "bias": layer.up.bias is not None}
            for name, layer in layers.items()
        },
    }
    (path / RANKS_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    return path


def read_ranks(path: str | Path) -> dict[str, Any]:
    """The checked contents of ``path/lowrank_ranks.json``; errors name the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"compressed checkpoint {path} does not exist")
    file = path / RANKS_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path} is not a low-rank compressed checkpoint: {RANKS_FILE} is missing")
    try:
        spec = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{file} is not readable JSON: {error}") from error
    if not isinstance(spec, dict) or spec.get("format_version") != FORMAT_VERSION:
        found = spec.get("format_version") if isinstance(spec, dict) else None
        raise ValueError(f"{file}: format_version {found!r}, expected {FORMAT_VERSION}")
    layers, ranks = spec.get("layers"), spec.get("ranks")
    if not isinstance(layers, dict) or not isinstance(ranks, dict) or not layers or set(layers) != set(ranks):
        raise ValueError(f"{file}: needs matching non-empty 'ranks' and 'layers' tables")
    for name, layer in layers.items():
        if not isinstance(layer, dict) or any(not isinstance(layer.get(key), int) for key in ("in_features", "out_features", "rank")):
            raise ValueError(f"{file}: layer {name} needs integer in_features, out_features and rank")
        if layer["rank"] != ranks[name]:
            raise ValueError(f"{file}: layer {name} has rank {ranks[name]} in 'ranks' but {layer['rank']} in 'layers'")
    return spec


def load_compressed(path: str | Path, model_class: Any = None, **from_pretrained_kwargs: Any) -> nn.Module:
    """Load a checkpoint written by ``save_compressed``, in eval mode.

    ``model_class``: a transformers auto class (default ``AutoModelForImageTextToText``)
    or a concrete model class. ``from_pretrained_kwargs`` go to ``from_pretrained``
    unchanged (``config``, ``dtype``/``torch_dtype``, ``device_map``, ``attn_implementation``,
    ``trust_remote_code``, ...). Raises ``FileNotFoundError`` for a missing folder or
    ranks file and ``ValueError`` when the ranks file or the weights do not fit the
    architecture, naming the checkpoint and the layer or keys.
    """
    from transformers import AutoConfig, AutoModelForImageTextToText

    path = Path(path)
    spec = read_ranks(path)
    model_class = model_class or AutoModelForImageTextToText
    trust = bool(from_pretrained_kwargs.get("trust_remote_code", False))
    config = from_pretrained_kwargs.get("config") or AutoConfig.from_pretrained(path, trust_remote_code=trust)
    base = _concrete_class(model_class, config, path, trust)
    layers: dict[str, dict[str, Any]] = spec["layers"]

    def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        base.__init__(self, *args, **kwargs)
        for name, layer in layers.items():
            _swap(self, name, layer, path)

    compressed = type(base.__name__, (base,), {"__init__": __init__, "__module__": base.__module__, "__qualname__": base.__qualname__})
    try:
        model, info = compressed.from_pretrained(path, output_loading_info=True, **from_pretrained_kwargs)
    except RuntimeError as error:  # transformers refuses factors whose saved shape differs from the ranks file
        if "mismatch" not in str(error).lower():
            raise
        raise ValueError(f"{path}: the saved weights do not fit the ranks in {RANKS_FILE} ({error})") from error
    model.__class__ = base  # the swap is done; leave no dynamic class behind (peft, pickling, isinstance)
    problems = {key: sorted(info.get(key) or ()) for key in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(problems.values()):
        detail = "; ".join(f"{key.replace('_', ' ')}: {', '.join(map(str, keys[:5]))}{' ...' if len(keys) > 5 else ''}"
                           for key, keys in problems.items() if keys)
        raise ValueError(f"{path}: the saved weights do not fit {RANKS_FILE} and the {config.model_type} architecture ({detail})")
    return model.eval()


def _swap(model: nn.Module, name: str, layer: dict[str, Any], path: Path) -> None:
    try:
        dense = model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"{path / RANKS_FILE}: layer {name} does not exist in {type(model).__name__}") from None
    shape = (layer["in_features"], layer["out_features"])
    if not isinstance(dense, nn.Linear) or (dense.in_features, dense.out_features) != shape:
        raise ValueError(f"{path / RANKS_FILE}: layer {name} is {dense!r} in {type(model).__name__}, not a Linear {shape[0]} -> {shape[1]}")
    weight = dense.weight
    bias = bool(layer.get("bias", dense.bias is not None))
    set_submodule(model, name, LowRankLinear(shape[0], shape[1], layer["rank"], bias, device=weight.device, dtype=weight.dtype))


def _concrete_class(model_class: Any, config: Any, path: Path, trust_remote_code: bool) -> type:
    """The model class ``model_class.from_pretrained`` would build for ``config``."""
    from transformers import PreTrainedModel

    if isinstance(model_class, type) and issubclass(model_class, PreTrainedModel):
        return model_class
    auto_map = getattr(config, "auto_map", None) or {}
    if trust_remote_code and model_class.__name__ in auto_map:
        from transformers.dynamic_module_utils import get_class_from_dynamic_module

        return get_class_from_dynamic_module(auto_map[model_class.__name__], str(path))
    mapping = getattr(model_class, "_model_mapping", None)
    if mapping is None or type(config) not in mapping:
        raise ValueError(f"{path}: {getattr(model_class, '__name__', model_class)} has no model class for a {config.model_type} config")
    found = mapping[type(config)]
    if isinstance(found, (list, tuple)):  # several candidates: the one named in config.architectures
        by_name = {cls.__name__: cls for cls in found}
        found = next((by_name[a] for a in (getattr(config, "architectures", None) or []) if a in by_name), found[0])
    return found
