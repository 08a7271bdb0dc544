"""Load a vision-language model and its processor the way users point at them.

One function serves every engine: a local folder or a hub id, HF offline mode
respected, the model's kind checked against what the engine can drive, an optional PEFT
LoRA adapter on top, and low-rank compressed checkpoints (``compression.persistence``)
recognised by their ranks file. Errors name the path or id and the problem, because
the usual failure on a cluster is a typo in a path or a model that was never cached.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vlm.families import ModelFamily, Role, UnsupportedModel, family_for


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message names the path or id and the reason."""


class ModelSource(BaseModel):
    """Where the weights come from and how to place them; shared by the GPU engines' options."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(description="local checkpoint folder or hub id")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    dtype: str = Field("auto", pattern="^(auto|bfloat16|float16|float32)$", description="auto: bfloat16 on CUDA, float32 on CPU")
    attn_implementation: str = Field(
        "auto",
        pattern="^(auto|flash_attention_2|sdpa|eager)$",
        description="auto: flash_attention_2 when flash-attn imports on CUDA, else sdpa",
    )
    device_map: str | None = Field("auto", description="auto: cuda:0 when a GPU is visible, else cpu; or any accelerate device map")
    trust_remote_code: bool = Field(False, description="run the checkpoint's own modelling code (dots.ocr ships some)")
    adapter: str | None = Field(None, description="PEFT LoRA adapter folder loaded on top of the base model")
    merge_adapter: bool = Field(True, description="merge the adapter into the weights after loading (faster generation)")
    local_files_only: bool | None = Field(None, description="never touch the hub; default: follow HF_HUB_OFFLINE")

    @classmethod
    def on_device(cls, model: str, device: str = "cpu", dtype: str = "auto", **fields: Any) -> ModelSource:
        """A source for a command-line job's ``--device``/``--dtype``: ``cpu`` places nothing and means float32 for ``auto``."""
        on_cpu = device == "cpu"
        return cls(model=model, device_map=None if on_cpu else device, dtype="float32" if on_cpu and dtype == "auto" else dtype, **fields)


def resolve_attention(requested: str) -> str:
    """``auto`` means flash-attn when it is importable and CUDA is there, else PyTorch's sdpa."""
    import torch

    if requested != "auto":
        if requested == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
            raise ModelLoadError("attn_implementation flash_attention_2 needs the flash-attn package: pip install 'docvlm[flash]'")
        return requested
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def resolve_dtype(requested: str) -> Any:
    import torch

    if requested == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16 if torch.cuda.is_available() else torch.float32
    return getattr(torch, requested)


def resolve_device_map(requested: str | None) -> Any:
    import torch

    if requested == "auto":
        return "cuda:0" if torch.cuda.is_available() else None
    return requested


def offline_mode(source: ModelSource) -> bool:
    if source.local_files_only is not None:
        return source.local_files_only
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def looks_like_path(name: str) -> bool:
    """Hub ids are ``org/name``; anything absolute, relative-dotted, home-relative or deeper is a path."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name or Path(name).exists()


def check_model_location(name: str, what: str = "model") -> str:
    """Return the path (expanded) or hub id; a missing local folder fails here, naming it."""
    if looks_like_path(name):
        path = Path(name).expanduser()
        if not path.exists():
            raise ModelLoadError(f"{what} path {name} does not exist")
        if not path.is_dir() or not (path / ("adapter_config.json" if what == "adapter" else "config.json")).exists():
            expected = "adapter_config.json" if what == "adapter" else "config.json"
            raise ModelLoadError(f"{what} path {name} is not a checkpoint folder ({expected} missing)")
        return str(path)
    return name


def hub_token() -> str | None:
    """The hub token: ``HF_TOKEN`` if set, else the one ``huggingface-cli login`` stored; None when neither is there.

    Passed to every ``from_pretrained`` explicitly, so that a gated checkpoint (Gemma 3n)
    is fetched with the token the process has, and the error for a refusal can say
    whether one was sent.
    """
    from huggingface_hub import get_token

    return get_token()


def hub_kwargs(source: ModelSource) -> dict[str, Any]:
    """What every ``from_pretrained`` of a source gets: revision, remote code, offline mode and the hub token."""
    return dict(
        revision=source.revision,
        trust_remote_code=source.trust_remote_code,
        local_files_only=offline_mode(source),
        token=hub_token(),
    )


REMOTE_CODE_HINT = (
    "this checkpoint ships its own modelling code (dots.ocr does): allow it with --trust-remote-code on the job's "
    "command line, or trust_remote_code: true in the engine's options (ocr.trust_remote_code for every OCR engine, "
    "train.trust_remote_code, tune.trust_remote_code)"
)


GATED_HINT = (
    "{model} is a gated model on the Hugging Face hub and {state}. Request access on "
    "https://huggingface.co/{model} with your account, then give the processes a token with read access: "
    "`huggingface-cli login` or `export HF_TOKEN=hf_...` on this machine; on a cluster pass it to every worker, "
    "e.g. `ray job submit --runtime-env-json '{{\"env_vars\": {{\"HF_TOKEN\": \"hf_...\"}}}}'`, "
    "cluster.runtime_env.env_vars.HF_TOKEN in the job's config, or a Kubernetes Secret in the pod templates; "
    "or download it once to shared storage and point the job at the folder (docs/checkpoints.md)"
)


def _is_gated_refusal(exc: BaseException) -> bool:
    """True when the hub refused a gated repository (``GatedRepoError`` anywhere in the chain)."""
    from huggingface_hub.errors import GatedRepoError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, GatedRepoError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def load_error(source: ModelSource, exc: BaseException, what: str = "model") -> ModelLoadError:
    """``exc`` from loading ``source`` as a ``ModelLoadError`` naming the model and, where known, the fix."""
    if _is_gated_refusal(exc):
        state = "the token sent was refused (no access granted to it yet?)" if hub_token() else "no hub token was found"
        return ModelLoadError(GATED_HINT.format(model=source.model, state=state))
    hint = ""
    if "trust_remote_code" in str(exc):
        hint = f" ({REMOTE_CODE_HINT})"
    elif offline_mode(source):
        hint = " (HF offline mode is on: the model must be in the local cache)"
    return ModelLoadError(f"cannot load {what} {source.model}{hint}: {type(exc).__name__}: {exc}")


def load_config(source: ModelSource, role: Role | None = None) -> tuple[Any, ModelFamily]:
    """Read the checkpoint's config; its ``model_type`` must be a family of the table (``vlm.families``) fit for ``role``."""
    from transformers import AutoConfig

    location = check_model_location(source.model)
    try:
        config = AutoConfig.from_pretrained(location, **hub_kwargs(source))
    except Exception as exc:
        raise load_error(source, exc, "the config of model") from exc
    try:
        family = family_for(config.model_type, role=role, what=f"model {source.model}")
    except UnsupportedModel as error:
        raise ModelLoadError(str(error)) from error
    return config, family


def load_model_and_processor(
    source: ModelSource,
    role: Role | None = None,
    processor_kwargs: dict[str, Any] | None = None,
    extra_model_kwargs: dict[str, Any] | None = None,
) -> tuple[Any, Any]:
    """Load model + processor from ``source`` (compressed checkpoints and adapters included), in eval mode.

    The family table (``vlm.families``) says which auto class loads the checkpoint and
    whether a published checkpoint's own code needs adapting (``family.adapter``, e.g.
    ``vlm.dots_ocr``). ``role``: the engine role the model must fit (``layout`` or
    ``picture``); None accepts every family. ``extra_model_kwargs`` go to
    ``from_pretrained`` as well (for example a bitsandbytes ``quantization_config`` for QLoRA training).
    """
    import transformers

    config, family = load_config(source, role)
    location = check_model_location(source.model)
    common = hub_kwargs(source)
    attention = resolve_attention(source.attn_implementation)
    adapter = importlib.import_module(family.adapter) if family.adapter else None
    if adapter is not None:
        adapter.prepare_config(config, attention)
    model_kwargs = dict(
        dtype=resolve_dtype(source.dtype),
        attn_implementation=attention,
        device_map=resolve_device_map(source.device_map),
        **(extra_model_kwargs or {}),
    )
    auto_class = getattr(transformers, family.auto_class)
    try:
        if _is_compressed(location):
            from compression.persistence import load_compressed

            model = load_compressed(location, model_class=auto_class, config=config, **common, **model_kwargs)
        else:
            model = auto_class.from_pretrained(location, config=config, **common, **model_kwargs)
        processor = load_processor(source, config, family, processor_kwargs)
        if adapter is not None:
            adapter.adapt_model(model)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise load_error(source, exc) from exc
    if source.adapter:
        model = attach_adapter(model, source)
    model.eval()
    return model, processor


def load_processor(source: ModelSource, config: Any, family: ModelFamily, processor_kwargs: dict[str, Any] | None = None) -> Any:
    """The checkpoint's processor: ``AutoProcessor``, or the family adapter's where the published one does not load."""
    from transformers import AutoProcessor

    location = check_model_location(source.model)
    common = hub_kwargs(source)
    if family.adapter:
        return importlib.import_module(family.adapter).load_processor(location, config, **common)
    return AutoProcessor.from_pretrained(location, **common, **(processor_kwargs or {}))


def attach_adapter(model: Any, source: ModelSource) -> Any:
    """Put a PEFT LoRA adapter (for example one trained by this project) on the base model."""
    try:
        from peft import PeftModel
    except ImportError as exc:  # pragma: no cover - peft is a dependency of the models extra
        raise ModelLoadError("loading an adapter needs peft: pip install 'docvlm[models]'") from exc
    location = check_model_location(source.adapter or "", what="adapter")
    try:
        model = PeftModel.from_pretrained(
            model, location, is_trainable=False, local_files_only=offline_mode(source), token=hub_token()
        )
    except Exception as exc:
        raise ModelLoadError(f"cannot load adapter {source.adapter} on model {source.model}: {exc}") from exc
    return model.merge_and_unload() if source.merge_adapter else model


def _is_compressed(location: str) -> bool:
    if not Path(location).is_dir():
        return False
    try:
        from compression.persistence import is_compressed_checkpoint
    except ImportError:
        return False
    return is_compressed_checkpoint(location)
