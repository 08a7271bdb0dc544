"""The prompt side of image-token pooling: each image's run of placeholder tokens shrunk to its pooled count.

``compression.pooling`` pools the visual tokens in the model; the prompt must hold as many
placeholders as the model then produces, or ``generate`` breaks. ``pool_processor_inputs``
shrinks every per-token tensor of a processor batch accordingly (padding side preserved),
and ``PooledProcessor`` wraps a processor so every call does it.
"""

from __future__ import annotations

from typing import Any

import torch

from compression.pooling import image_runs, merged_grids, pooled_token_counts
from compression.settings import PoolingConfig


def _padding_side(attention_mask: torch.Tensor, default: str) -> str:
    if bool((attention_mask[:, 0] == 0).any()):
        return "left"
    if bool((attention_mask[:, -1] == 0).any()):
        return "right"
    return default


def pool_processor_inputs(
    inputs: Any,
    config: PoolingConfig,
    *,
    merge_size: int,
    image_token_id: int,
    pad_token_id: int,
    padding_side: str | None = None,
) -> Any:
    """Rewrite a processor batch so each image's placeholder run holds its pooled token count.

    ``input_ids``, ``attention_mask`` and every other ``(batch, seq)`` tensor (such as
    ``mm_token_type_ids``) are rebuilt; a run keeps its first ``pooled_count`` entries.
    Rows are re-padded on the side the batch was padded on (``padding_side`` when given,
    else detected from the mask, else left). ``pixel_values`` and ``image_grid_thw`` are
    untouched: the vision tower must still see the original grid.
    """
    from transformers import BatchFeature

    if "input_ids" not in inputs or not isinstance(inputs["input_ids"], torch.Tensor):
        raise ValueError("pool_processor_inputs: inputs need an 'input_ids' tensor (call the processor with return_tensors='pt')")
    data = dict(inputs.items())
    grid = data.get("image_grid_thw")
    if grid is None or config.is_identity:
        return BatchFeature(data=data)
    input_ids = data["input_ids"]
    if input_ids.dim() != 2:
        raise ValueError(f"pool_processor_inputs: input_ids must be (batch, seq), got shape {tuple(input_ids.shape)}")
    mask = data.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(input_ids)
    full = [t * h * w for t, h, w in merged_grids(grid, merge_size)]
    pooled = pooled_token_counts(grid, config, merge_size)
    per_token = [k for k, v in data.items() if isinstance(v, torch.Tensor) and k != "attention_mask" and v.shape == input_ids.shape]

    image, kept_rows = 0, []
    for b in range(input_ids.shape[0]):
        valid = mask[b].nonzero().flatten()
        tokens = input_ids[b, valid].tolist()
        keep = torch.ones(len(tokens), dtype=torch.bool)
        for start, length in image_runs(tokens, image_token_id):
            if image >= len(full):
                raise ValueError(f"input_ids row {b} has more image placeholder runs than image_grid_thw has images ({len(full)})")
            if length != full[image]:
                raise ValueError(
                    f"input_ids row {b}: image {image} has {length} placeholder tokens but image_grid_thw {grid[image].tolist()} "
                    f"with merge {merge_size} gives {full[image]} (already pooled, or a mismatched grid?)"
                )
            keep[start + pooled[image] : start + length] = False
            image += 1
        kept_rows.append(valid[keep])
    if image != len(full):
        raise ValueError(f"input_ids hold {image} image placeholder runs but image_grid_thw has {len(full)} images")

    side = padding_side or _padding_side(mask, "left")
    if side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
    length = max(len(r) for r in kept_rows)
    new_mask = torch.zeros((len(kept_rows), length), dtype=mask.dtype, device=mask.device)
    rebuilt = {
        k: torch.full((len(kept_rows), length), pad_token_id if k == "input_ids" else 0, dtype=data[k].dtype, device=data[k].device)
        for k in per_token
    }
    for b, rows in enumerate(kept_rows):
        cols = slice(length - len(rows), length) if side == "left" else slice(0, len(rows))
        new_mask[b, cols] = 1
        for k in per_token:
            rebuilt[k][b, cols] = data[k][b, rows]
    data.update(rebuilt)
    if "attention_mask" in data:
        data["attention_mask"] = new_mask
    return BatchFeature(data=data)


def visual_token_count(inputs: Any, image_token_id: int) -> int:
    """Image placeholder tokens the LM will see in a (pooled or not) processor batch, padding excluded."""
    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask") if hasattr(inputs, "get") else None
    hits = ids == image_token_id
    if mask is not None:
        hits &= mask.bool()
    return int(hits.sum())


class PooledProcessor:
    """A processor wrapper whose ``__call__`` returns prompts rewritten for ``config``; everything else is delegated."""

    def __init__(self, processor: Any, config: PoolingConfig):
        self.processor, self.config = processor, config
        image_processor = getattr(processor, "image_processor", None)
        if image_processor is None or not hasattr(image_processor, "merge_size"):
            raise ValueError(f"PooledProcessor needs a Qwen2-VL-style processor with image_processor.merge_size, got {type(processor).__name__}")
        tokenizer = processor.tokenizer
        self.merge_size = int(image_processor.merge_size)
        self.image_token_id = getattr(processor, "image_token_id", None) or tokenizer.convert_tokens_to_ids(processor.image_token)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        inputs = self.processor(*args, **kwargs)
        side = kwargs.get("padding_side")
        return pool_processor_inputs(
            inputs, self.config, merge_size=self.merge_size, image_token_id=self.image_token_id, pad_token_id=self.pad_token_id, padding_side=side
        )

    def visual_token_count(self, inputs: Any) -> int:
        return visual_token_count(inputs, self.image_token_id)

    def __getattr__(self, name: str) -> Any:
        processor = self.__dict__.get("processor")
        if processor is None:
            raise AttributeError(name)
        return getattr(processor, name)
