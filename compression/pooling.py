"""Image-token pooling: the language model sees fewer visual tokens (Qwen2-VL family and dots.ocr).

Where pooling hooks in is the family table's (``vlm.families``: ``pooling``). dots.ocr
(1-D positions) pools the vision tower's output and needs nothing else. The Qwen2-VL
family (M-RoPE) needs more, described here:

The vision tower is left alone (it still receives the original ``image_grid_thw``); its
merged output tokens, which ``Qwen2_5_VisionTransformerPretrainedModel.forward`` returns
in row-major ``(t, h/merge, w/merge)`` order once it has undone its window-attention
permutation (``merged[argsort(window_index)]``), are pooled per image before they are
scattered into the prompt:

* ``avg`` / ``max``: spatial pooling by ``factor`` k on each frame's grid. A grid side
  that k does not divide is padded up to the next multiple (ceil): the pooled grid is
  ``(t, ceil(h_m/k), ceil(w_m/k))`` and an edge window averages (or maxes) only the real
  tokens it covers, never the padding.
* ``norm_drop``: keep the ``n_keep = max(1, ceil(keep_ratio * n))`` tokens of each image
  (n = t*h_m*w_m) with the largest L2 norm, in their original order.

Two things must then agree with the pooled features, or ``generate`` breaks:

1. the prompt: ``pool_processor_inputs`` / ``PooledProcessor`` shrink each image's run
   of ``<|image_pad|>`` tokens to the pooled count (and every other per-token tensor
   along with it, padding side preserved);
2. the M-RoPE position ids: ``apply_token_pooling`` wraps the model's
   ``get_rope_index``. For avg/max it passes the pooled grid, in patch units
   ``(t, ceil(h_m/k)*merge, ceil(w_m/k)*merge)``, so positions follow the pooled grid
   and the text after an image advances by ``max(ceil(h_m/k), ceil(w_m/k))``. For
   norm_drop each kept token keeps the position it has in the unpooled model: the
   prompt is re-expanded to the full grid, the original ``get_rope_index`` runs on it,
   and the kept tokens' (and the text tokens') positions are gathered back. The kept
   indices depend on the features, so they come from the last ``get_image_features``
   call on the same grids; in ``generate``, which computes positions before the forward
   pass, the wrapper runs the vision tower itself and hands the result to the forward
   pass (one vision pass, not two).

The wrappers are instance attributes on the inner ``Qwen2_5_VLModel`` (the dots.ocr hook
sits on its vision tower); ``remove_token_pooling`` deletes them and the class methods are back.
"""

from __future__ import annotations

import weakref
from typing import Any, Sequence

import torch
from torch import nn

from compression.settings import PoolingConfig

_HOOK_ATTR = "_token_pooling"


def merged_grids(image_grid_thw: torch.Tensor | Sequence[Sequence[int]], merge_size: int) -> list[tuple[int, int, int]]:
    """Per-image merged-token grids ``(t, h/merge, w/merge)`` from the processor's patch grid."""
    rows = image_grid_thw.tolist() if isinstance(image_grid_thw, torch.Tensor) else [list(r) for r in image_grid_thw]
    return [(int(t), int(h) // merge_size, int(w) // merge_size) for t, h, w in rows]


def pooled_token_counts(image_grid_thw: torch.Tensor | Sequence[Sequence[int]], config: PoolingConfig, merge_size: int) -> list[int]:
    """Visual tokens the LM sees per image under ``config`` (see ``PoolingConfig.pooled_count``)."""
    return [config.pooled_count(*grid) for grid in merged_grids(image_grid_thw, merge_size)]


def pooled_image_grid_thw(image_grid_thw: torch.Tensor, config: PoolingConfig, merge_size: int) -> torch.Tensor:
    """The grid, in patch units, that M-RoPE uses after avg/max pooling: ``(t, ceil(h_m/k)*merge, ceil(w_m/k)*merge)``."""
    rows = [config.pooled_grid(*grid) for grid in merged_grids(image_grid_thw, merge_size)]
    out = torch.tensor([[t, h * merge_size, w * merge_size] for t, h, w in rows], dtype=image_grid_thw.dtype)
    return out.reshape(-1, 3).to(image_grid_thw.device)


def pool_image_features(
    features: torch.Tensor, grid: tuple[int, int, int], config: PoolingConfig
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pool one image's merged tokens ``(t*h_m*w_m, d)`` laid out row-major on ``grid``.

    Returns the pooled tokens and, for norm_drop, the sorted indices of the kept tokens.
    """
    t, h, w = grid
    if features.shape[0] != t * h * w:
        raise ValueError(f"image features have {features.shape[0]} tokens but the merged grid {grid} holds {t * h * w}")
    if config.is_identity:
        return features, None
    if config.method == "norm_drop":
        n_keep = config.pooled_count(t, h, w)
        scores = features.float().norm(dim=-1)
        keep = torch.topk(scores, n_keep).indices.sort().values
        return features[keep], keep
    k, d = config.factor, features.shape[-1]
    _, hp, wp = config.pooled_grid(t, h, w)
    fill = 0.0 if config.method == "avg" else torch.finfo(features.dtype).min
    padded = features.new_full((t, hp * k, wp * k, d), fill)
    padded[:, :h, :w] = features.view(t, h, w, d)
    blocks = padded.view(t, hp, k, wp, k, d)
    if config.method == "max":
        return blocks.amax(dim=(2, 4)).reshape(-1, d), None
    counts = features.new_zeros((1, hp * k, wp * k, 1))
    counts[:, :h, :w] = 1
    counts = counts.view(1, hp, k, wp, k, 1).sum(dim=(2, 4))
    return (blocks.sum(dim=(2, 4)) / counts).reshape(-1, d), None


def image_runs(tokens: list[int], image_token_id: int) -> list[tuple[int, int]]:
    """(start, length) of each contiguous run of image placeholder tokens."""
    runs, start = [], None
    for i, tok in enumerate(tokens + [None]):  # sentinel closes a trailing run
        if tok == image_token_id and start is None:
            start = i
        elif tok != image_token_id and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


# --- the model side ----------------------------------------------------------------------


def _inner_model(model: nn.Module) -> nn.Module:
    inner = model.model if hasattr(model, "model") and hasattr(model.model, "visual") else model
    for name in ("visual", "get_image_features", "get_rope_index"):
        if not hasattr(inner, name):
            raise TypeError(f"token pooling needs a Qwen2.5-VL-architecture model (with {name!r}), got {type(model).__name__}")
    return inner


class _TokenPooling:
    """State of the installed wrappers: config, original methods, the kept indices of the last vision pass."""

    def __init__(self, inner: nn.Module, config: PoolingConfig):
        self.config = config
        self.merge_size = int(inner.config.vision_config.spatial_merge_size)
        self.image_token_id = int(inner.config.image_token_id)
        self.original_image_features = inner.get_image_features  # bound class methods
        self.original_rope_index = inner.get_rope_index
        self.original_placeholder_mask = getattr(inner, "get_placeholder_mask", None)
        self.last_keep: tuple[list[list[int]], list[torch.Tensor]] | None = None  # (grid, kept indices per image)
        self._pending: tuple[Any, tuple, Any] | None = None  # (weakref to pixel_values, key, pooled output)

    # The vision side.
    def get_image_features(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor | None = None, **kwargs: Any) -> Any:
        return_dict = kwargs.pop("return_dict", True)
        if image_grid_thw is None:
            raise ValueError("token pooling needs image_grid_thw to lay the visual tokens out on their grid")
        out = self._take_pending(pixel_values, image_grid_thw)
        if out is None:
            out = self.original_image_features(pixel_values, image_grid_thw, return_dict=True, **kwargs)
            grids = merged_grids(image_grid_thw, self.merge_size)
            pooled, keeps = [], []
            for features, grid in zip(out.pooler_output, grids):
                p, keep = pool_image_features(features, grid, self.config)
                pooled.append(p)
                keeps.append(keep)
            out.pooler_output = tuple(pooled)
            if self.config.method == "norm_drop":
                self.last_keep = (image_grid_thw.tolist(), keeps)
        return out if return_dict else out.to_tuple()

    def _key(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor | None) -> tuple:
        grid = None if image_grid_thw is None else tuple(map(tuple, image_grid_thw.tolist()))
        return (pixel_values.data_ptr(), pixel_values._version, tuple(pixel_values.shape), grid)

    def _take_pending(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor | None) -> Any:
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        ref, key, out = pending
        return out if ref() is pixel_values and key == self._key(pixel_values, image_grid_thw) else None

    def get_placeholder_mask(self, *args: Any, **kwargs: Any) -> Any:
        """The model's own count check, with the fix named when an unpooled prompt meets pooled features."""
        try:
            return self.original_placeholder_mask(*args, **kwargs)
        except (ValueError, RuntimeError) as error:
            raise ValueError(
                f"{error}; with token pooling {self.config} installed, build the prompt with PooledProcessor or pool_processor_inputs"
            ) from error

    # The position side.
    def get_rope_index(
        self,
        input_ids: torch.Tensor,
        mm_token_type_ids: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        video_grid_thw: torch.Tensor | None = None,
        second_per_grid_ts: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rest = dict(video_grid_thw=video_grid_thw, second_per_grid_ts=second_per_grid_ts, **kwargs)
        if image_grid_thw is None or self.config.is_identity:
            return self.original_rope_index(
                input_ids, mm_token_type_ids=mm_token_type_ids, image_grid_thw=image_grid_thw, attention_mask=attention_mask, **rest
            )
        self._check_placeholders(input_ids, attention_mask, image_grid_thw)
        if self.config.method != "norm_drop":
            grid = pooled_image_grid_thw(image_grid_thw, self.config, self.merge_size)
            return self.original_rope_index(
                input_ids, mm_token_type_ids=mm_token_type_ids, image_grid_thw=grid, attention_mask=attention_mask, **rest
            )
        keeps = self._kept_indices(image_grid_thw, kwargs.get("pixel_values"))
        return self._norm_drop_rope_index(input_ids, mm_token_type_ids, image_grid_thw, attention_mask, keeps, rest)

    def _check_placeholders(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, image_grid_thw: torch.Tensor) -> None:
        hits = input_ids == self.image_token_id
        if attention_mask is not None:
            hits &= attention_mask.bool()
        expected = sum(pooled_token_counts(image_grid_thw, self.config, self.merge_size))
        if int(hits.sum()) != expected:
            raise ValueError(
                f"input_ids hold {int(hits.sum())} image placeholder tokens but pooling {self.config} gives {expected} for "
                f"image_grid_thw {image_grid_thw.tolist()}: build the prompt with PooledProcessor or pool_processor_inputs"
            )

    def _kept_indices(self, image_grid_thw: torch.Tensor, pixel_values: torch.Tensor | None) -> list[torch.Tensor]:
        if pixel_values is not None:  # generate: positions come before the forward pass, so run the tower now
            out = self.get_image_features(pixel_values, image_grid_thw)
            self._pending = (weakref.ref(pixel_values), self._key(pixel_values, image_grid_thw), out)
        if self.last_keep is None or self.last_keep[0] != image_grid_thw.tolist():
            raise ValueError(
                "norm_drop pooling places kept tokens at their original grid positions, which needs the kept indices of a "
                f"vision pass over image_grid_thw {image_grid_thw.tolist()}: call get_image_features (or forward) on these images first"
            )
        return self.last_keep[1]

    def _norm_drop_rope_index(
        self,
        input_ids: torch.Tensor,
        mm_token_type_ids: torch.Tensor,
        image_grid_thw: torch.Tensor,
        attention_mask: torch.Tensor | None,
        keeps: list[torch.Tensor],
        rest: dict[str, Any],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the original M-RoPE on the re-expanded prompt and gather the kept tokens' positions."""
        full = [t * h * w for t, h, w in merged_grids(image_grid_thw, self.merge_size)]
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        rows, image = [], 0
        for b in range(input_ids.shape[0]):
            valid = mask[b].bool()
            ids, types = input_ids[b, valid].tolist(), mm_token_type_ids[b, valid].tolist()
            new_ids, new_types, gather, pos = [], [], [], 0
            runs = {start: length for start, length in image_runs(ids, self.image_token_id)}
            while pos < len(ids):
                if pos in runs:
                    keep = keeps[image].tolist()
                    if len(keep) != runs[pos]:
                        raise ValueError(f"input_ids row {b}: image {image} has {runs[pos]} placeholders but norm_drop kept {len(keep)} tokens")
                    base = len(new_ids)
                    new_ids += [self.image_token_id] * full[image]
                    new_types += [types[pos]] * full[image]
                    gather += [base + i for i in keep]
                    pos += runs[pos]
                    image += 1
                else:
                    gather.append(len(new_ids))
                    new_ids.append(ids[pos])
                    new_types.append(types[pos])
                    pos += 1
            rows.append((valid, new_ids, new_types, gather))
        length = max(len(r[1]) for r in rows)
        device = input_ids.device
        exp_ids = torch.zeros((len(rows), length), dtype=input_ids.dtype, device=device)
        exp_types = torch.zeros((len(rows), length), dtype=mm_token_type_ids.dtype, device=device)
        exp_mask = torch.zeros((len(rows), length), dtype=mask.dtype, device=device)
        for b, (_, ids, types, _) in enumerate(rows):
            exp_ids[b, : len(ids)] = torch.tensor(ids, dtype=input_ids.dtype)
            exp_types[b, : len(ids)] = torch.tensor(types, dtype=mm_token_type_ids.dtype)
            exp_mask[b, : len(ids)] = 1
        exp_pos, _ = self.original_rope_index(exp_ids, mm_token_type_ids=exp_types, image_grid_thw=image_grid_thw, attention_mask=exp_mask, **rest)
        position_ids = torch.zeros((3, *input_ids.shape), dtype=exp_pos.dtype, device=device)
        deltas = []
        for b, (valid, _, _, gather) in enumerate(rows):
            kept = exp_pos[:, b, torch.tensor(gather, dtype=torch.long, device=device)]
            position_ids[:, b, valid] = kept
            deltas.append(kept.max() + 1 - len(gather))
        return position_ids, torch.stack(deltas).reshape(-1, 1).to(device)


class _VisionOutputPooling:
    """Pooling on the vision tower's output, for families with 1-D positions (dots.ocr): nothing else to adjust.

    The tower returns every image's merged tokens packed in one ``(sum t*h_m*w_m, d)``
    tensor in row-major order per image; a forward hook pools each image's run.
    """

    def __init__(self, tower: nn.Module, config: PoolingConfig, merge_size: int):
        self.config, self.merge_size = config, merge_size
        self.handle = tower.register_forward_hook(self._pool, with_kwargs=True)

    def _pool(self, module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor:
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        if grid is None:
            raise ValueError("token pooling needs the tower's grid_thw to lay the visual tokens out on their grid")
        grids = merged_grids(grid, self.merge_size)
        runs = torch.split(output, [t * h * w for t, h, w in grids], dim=0)
        return torch.cat([pool_image_features(run, g, self.config)[0] for run, g in zip(runs, grids)], dim=0)

    def remove(self) -> None:
        self.handle.remove()


def _pooling_site(model: nn.Module) -> tuple[Any, nn.Module]:
    """The model's family (``vlm.families``) and the module pooling state hangs on; families without pooling are refused."""
    from vlm.families import family_of

    family = family_of(model)
    if family.pooling is None:
        family.refuse("pooling")
        raise ValueError(f"token pooling does not apply to {family.name} models")
    if family.pooling == "vision_output":
        return family, family.vision_tower(model)
    return family, _inner_model(model)


def apply_token_pooling(model: nn.Module, config: PoolingConfig) -> nn.Module:
    """Install pooling on a model of a family that has it (``vlm.families``: ``pooling``), in place.

    Qwen2-VL family: wrappers of ``get_image_features`` / ``get_rope_index`` (M-RoPE
    positions follow the pooled grid). dots.ocr: a hook on the vision tower's output (its
    1-D positions need nothing more). Prompts must then come from ``PooledProcessor`` /
    ``pool_processor_inputs`` with the same config. Re-applying replaces the previous
    config. Returns ``model``.
    """
    family, site = _pooling_site(model)
    remove_token_pooling(model)
    if family.pooling == "vision_output":
        merge = int(getattr(getattr(site, "config", None), "spatial_merge_size", 2))
        setattr(site, _HOOK_ATTR, _VisionOutputPooling(site, config, merge))
        return model
    hook = _TokenPooling(site, config)
    setattr(site, _HOOK_ATTR, hook)
    site.get_image_features = hook.get_image_features
    site.get_rope_index = hook.get_rope_index
    if hook.original_placeholder_mask is not None:
        site.get_placeholder_mask = hook.get_placeholder_mask
    return model


def remove_token_pooling(model: nn.Module) -> bool:
    """Undo ``apply_token_pooling``; returns whether pooling was installed."""
    family, site = _pooling_site(model)
    hook = getattr(site, _HOOK_ATTR, None)
    if hook is None:
        return False
    if isinstance(hook, _VisionOutputPooling):
        hook.remove()
        site.__dict__.pop(_HOOK_ATTR, None)
        return True
    for name in ("get_image_features", "get_rope_index", "get_placeholder_mask", _HOOK_ATTR):
        site.__dict__.pop(name, None)
    site.rope_deltas = None
    return True


def token_pooling_config(model: nn.Module) -> PoolingConfig | None:
    """The installed pooling config, or None (also for families without pooling)."""
    from vlm.families import UnsupportedModel

    try:
        _, site = _pooling_site(model)
    except (UnsupportedModel, ValueError):
        return None
    hook = getattr(site, _HOOK_ATTR, None)
    return None if hook is None else hook.config
