"""The model families the project drives, in one table that every part reads.

A checkpoint's ``config.json`` ``model_type`` names its family. Per family the table says
what the loader, the engines, PELA, LoRA, the FLOP counter, token pooling, evaluation and
the sweep need to know about the model's shape:

* ``auto_class``: the transformers auto class that loads it, and whether the checkpoint
  ships its own modelling code (``remote_code``: ``trust_remote_code`` must be on);
* the towers, as module-name patterns (shell-style, matched against whole names; the
  leading ``*`` keeps them working under wrappers such as peft's ``base_model.model.``):
  ``language_blocks`` (the decoder blocks), ``vision_blocks`` (the vision transformer's
  blocks), ``projector`` (vision-to-language merger or projector);
* ``vision_module`` / ``language_module``: attribute paths of the vision tower and of the
  decoder stack (``.layers``), for the FLOP counter and pooling;
* ``positions``: ``mrope`` (3-D multimodal RoPE, Qwen2-VL), ``text`` (1-D RoPE with the
  image tokens spliced into the embeddings, dots.ocr), or None where static decoding does
  not apply (Gemma's sliding-window caches);
* ``image_token_attr``: the config attribute holding the image placeholder id;
* ``pooling``: where image-token pooling hooks in (``image_features``: the model's
  ``get_image_features``, with M-RoPE positions re-derived; ``vision_output``: the vision
  tower's output, 1-D positions need nothing more), or None;
* ``adapter``: a module that adapts a published checkpoint whose own code does not run
  as is under current transformers (``vlm.dots_ocr``), or None;
* ``not_applicable``: for a part that does not apply to the family, the reason, given to
  the user as the error instead of a KeyError deep in the part.

One vocabulary names the towers everywhere (PELA targets, LoRA targets, the sweep's
``parts``): ``language``, ``vision`` or ``both``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

Tower = Literal["language", "vision", "both"]
TOWERS: tuple[str, ...] = ("language", "vision", "both")
Role = Literal["layout", "picture"]
Part = Literal["vision_blocks", "pooling", "static_decoding", "flops"]


class UnsupportedModel(ValueError):
    """The model's kind is not in the table, or a part does not apply to its family; the message says which and why."""


@dataclass(frozen=True)
class ModelFamily:
    name: str
    model_types: tuple[str, ...]
    auto_class: str
    roles: tuple[Role, ...]
    language_blocks: tuple[str, ...]
    vision_blocks: tuple[str, ...]
    projector: tuple[str, ...]
    vision_module: str
    language_module: str
    positions: Literal["mrope", "text"] | None
    image_token_attr: str
    pooling: Literal["image_features", "vision_output"] | None
    remote_code: bool = False
    adapter: str | None = None
    not_applicable: Mapping[str, str] = field(default_factory=dict)

    def tower_patterns(self, towers: str, *, with_projector: bool = False) -> tuple[str, ...]:
        """Module-name patterns of ``language``, ``vision`` or ``both`` towers (the projector with the vision side if asked)."""
        check_towers(towers)
        patterns: tuple[str, ...] = ()
        if towers in ("language", "both"):
            patterns += self.language_blocks
        if towers in ("vision", "both"):
            if not self.vision_blocks:
                self.refuse("vision_blocks")
            patterns += self.vision_blocks + (self.projector if with_projector else ())
        return patterns

    def refuse(self, part: Part) -> None:
        """Raise ``UnsupportedModel`` with the reason ``part`` does not apply to this family, if it does not."""
        reason = self.not_applicable.get(part)
        if reason is not None:
            raise UnsupportedModel(f"{part.replace('_', ' ')} does not apply to {self.name} models: {reason}")

    def image_token_id(self, config: Any) -> int:
        return int(getattr(config, self.image_token_attr))

    def submodule(self, model: Any, path: str) -> Any:
        """``vision_module`` / ``language_module`` of ``model`` (or of the model a peft wrapper holds)."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        node = base
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                raise UnsupportedModel(f"{type(base).__name__} has no {path!r}, which {self.name} models have: not a {self.name} model?")
        return node

    def vision_tower(self, model: Any) -> Any:
        return self.submodule(model, self.vision_module)

    def language_model(self, model: Any) -> Any:
        return self.submodule(model, self.language_module)


_QWEN_VL = dict(
    auto_class="AutoModelForImageTextToText",
    roles=("layout",),
    language_blocks=("*language_model.layers.*",),
    vision_blocks=("*visual.blocks.*",),
    projector=("*visual.merger.*",),
    vision_module="model.visual",
    language_module="model.language_model",
    positions="mrope",
    image_token_attr="image_token_id",
    pooling="image_features",
)

_GEMMA_NOT_APPLICABLE = {
    "static_decoding": "its cache has sliding-window layers; slot refill needs full attention only (decode: dynamic)",
    "pooling": "each image is a fixed number of soft tokens set by the processor (image_seq_length), not a grid to pool",
    "flops": "the FLOP counter knows the Qwen2-VL-family and dots.ocr vision towers only",
}

FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily(name="Qwen2-VL", model_types=("qwen2_vl",), **_QWEN_VL),  # type: ignore[arg-type]
    ModelFamily(name="Qwen2.5-VL", model_types=("qwen2_5_vl",), **_QWEN_VL),  # type: ignore[arg-type]
    ModelFamily(
        name="dots.ocr",
        model_types=("dots_ocr",),
        auto_class="AutoModelForCausalLM",
        roles=("layout",),
        language_blocks=("*model.layers.*",),
        vision_blocks=("*vision_tower.blocks.*",),
        projector=("*vision_tower.merger.*",),
        vision_module="vision_tower",
        language_module="model",
        positions="text",
        image_token_attr="image_token_id",
        pooling="vision_output",
        remote_code=True,
        adapter="vlm.dots_ocr",
    ),
    ModelFamily(
        name="Gemma 3",
        model_types=("gemma3",),
        auto_class="AutoModelForImageTextToText",
        roles=("picture",),
        language_blocks=("*language_model.layers.*",),
        vision_blocks=("*vision_tower.*encoder.layers.*",),
        projector=("*multi_modal_projector*",),
        vision_module="model.vision_tower",
        language_module="model.language_model",
        positions=None,
        image_token_attr="image_token_id",
        pooling=None,
        not_applicable=_GEMMA_NOT_APPLICABLE,
    ),
    ModelFamily(
        name="Gemma 3n",
        model_types=("gemma3n",),
        auto_class="AutoModelForImageTextToText",
        roles=("picture",),
        language_blocks=("*language_model.layers.*",),
        vision_blocks=(),
        projector=("*embed_vision.*",),
        vision_module="model.vision_tower",
        language_module="model.language_model",
        positions=None,
        image_token_attr="image_token_id",
        pooling=None,
        not_applicable={
            **_GEMMA_NOT_APPLICABLE,
            "vision_blocks": "its vision tower is MobileNet-V5 (timm), a convolutional network with no transformer blocks "
            "for PELA to factor or LoRA to adapt; use the language tower (language)",
        },
    ),
)

_BY_MODEL_TYPE = {model_type: family for family in FAMILIES for model_type in family.model_types}


def supported() -> str:
    """``Qwen2-VL (qwen2_vl), ...``: what the table knows, for error messages."""
    return ", ".join(f"{f.name} ({'/'.join(f.model_types)})" for f in FAMILIES)


def family_for(model_type: str | None, *, role: Role | None = None, what: str = "model") -> ModelFamily:
    """The family of a ``model_type``; an unknown one (or one outside ``role``) is refused, naming what is supported."""
    family = _BY_MODEL_TYPE.get(model_type or "")
    if family is None:
        raise UnsupportedModel(f"{what} is a {model_type!r} model, which this project does not drive; supported: {supported()}")
    if role is not None and role not in family.roles:
        fits = ", ".join(f"{f.name} ({'/'.join(f.model_types)})" for f in FAMILIES if role in f.roles)
        raise UnsupportedModel(f"{what} is a {family.name} model ({model_type}); the {role} engine drives {fits}")
    return family


def family_of(model: Any) -> ModelFamily:
    """The family of a loaded model (or of the model a peft wrapper holds)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return family_for(getattr(getattr(base, "config", None), "model_type", None), what=type(base).__name__)


def model_types(role: Role | None = None) -> tuple[str, ...]:
    """Every ``model_type`` the table knows, or those of one engine role."""
    return tuple(t for f in FAMILIES if role is None or role in f.roles for t in f.model_types)


def check_towers(towers: str) -> str:
    if towers not in TOWERS:
        raise ValueError(f"towers must be one of {', '.join(TOWERS)}, got {towers!r}")
    return towers
