"""Position ids for decoding rows that start at different times.

With slot refill every row of the batch is at its own position, so the decode loop
passes position ids explicitly instead of letting the model derive them from a shared
cache length. Two schemes cover the layout models:

* **M-RoPE** (Qwen2-VL, Qwen2.5-VL): the prompt's image tokens get 3-D (time, height,
  width) positions from the model's own ``get_rope_index``; text tokens after them
  continue from the largest position + 1, the same value in all three rows. This is
  what ``generate`` feeds too (``cache_position + rope_deltas``).
* **1-D RoPE** (dots.ocr: a Qwen2 language model with the vision tokens spliced into
  the embeddings): positions count the non-padding tokens, as ``generate`` derives them
  from the attention mask.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

import torch


class PositionScheme(Protocol):
    def prefill(self, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Position ids for the (left-padded) prompt, and each row's next position ``(batch,)``."""
        ...

    def decode(self, next_positions: torch.Tensor) -> torch.Tensor:
        """Position ids for one new token per row, from ``(batch,)`` positions."""
        ...


class TextPositions:
    """1-D positions counted over the attention mask (padding does not advance them)."""

    def prefill(self, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        mask = inputs["attention_mask"].long()
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        return positions, mask.sum(-1)

    def decode(self, next_positions: torch.Tensor) -> torch.Tensor:
        return next_positions.view(-1, 1)


class MRopePositions:
    """3-D multimodal positions from the model's ``get_rope_index`` (Qwen2-VL family)."""

    def __init__(self, model: Any):
        self.inner = model.model  # Qwen2(_5)_VLModel: owns get_rope_index
        self.image_token_id = model.config.image_token_id

    def prefill(self, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids, mask = inputs["input_ids"], inputs["attention_mask"]
        token_types = inputs.get("mm_token_type_ids")
        if token_types is None:  # processors older than the mm_token_type_ids output
            token_types = (input_ids == self.image_token_id).long()
        extra = {"pixel_values": inputs["pixel_values"]} if "pixel_values" in inputs else {}  # token pooling's norm_drop reads them
        positions, _ = self.inner.get_rope_index(
            input_ids=input_ids,
            mm_token_type_ids=token_types,
            image_grid_thw=inputs.get("image_grid_thw"),
            attention_mask=mask,
            **extra,
        )
        valid = mask.bool().unsqueeze(0)
        next_positions = positions.masked_fill(~valid, -1).amax(dim=(0, 2)) + 1
        return positions, next_positions

    def decode(self, next_positions: torch.Tensor) -> torch.Tensor:
        return next_positions.view(1, -1, 1).expand(3, -1, 1)


def position_scheme(model: Any) -> PositionScheme:
    """The scheme of ``model``'s family (``vlm.families``: ``positions``); families without one are refused by name."""
    from vlm.families import UnsupportedModel, family_of

    try:
        family = family_of(model)
        if family.positions == "mrope":
            return MRopePositions(model)
        if family.positions == "text":
            return TextPositions()
        family.refuse("static_decoding")
        raise UnsupportedModel(f"static decoding does not know the positions of {family.name} models")
    except UnsupportedModel as error:
        raise ValueError(f"{error} (use decode: dynamic)") from None
