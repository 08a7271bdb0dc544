"""Activation-aware low rank: make the SVD truncation care about the inputs a layer really sees.

Plain SVD keeps the directions of largest weight energy, but what matters is the output
error ``(W - W_r) x``: input directions that carry large or correlated activations
matter more. Both methods here are an input transform ``T`` (factor ``W T``, then fold
``T^-1`` into the ``down`` factor; ``compression.lowrank.factorize``):

* ``asvd`` (ASVD, Yuan et al. 2023): ``T = diag(mean|x|)^alpha``, per input channel;
  cheap, and good against outlier channels. ``alpha`` 0.5 is ASVD's default.
* ``whiten`` (SVD-LLM, Wang et al. 2024): ``T = S``, the Cholesky factor of ``XᵀX``
  (``S Sᵀ = XᵀX``). Then ``||(W - W_r) Xᵀ||_F = ||(W S) - (W S)_r||_F``, so truncating
  the SVD of ``W S`` minimises the output error on the calibration inputs exactly:
  ``down = Σ_r^½ V_rᵀ S⁻¹``, ``up = U_r Σ_r^½``. ``XᵀX`` is singular when the inputs
  span fewer directions than the layer has inputs (few calibration tokens, or low-rank
  activations); a small diagonal damping (``damping`` times the mean diagonal, raised
  tenfold until Cholesky succeeds) keeps ``S⁻¹`` bounded, so directions never seen in
  calibration are not amplified on new inputs.

Statistics come from forward pre-hooks over a few calibration batches of the
**uncompressed** model (every layer sees the original activations; SVD-LLM's
sequential variant, which re-calibrates on the compressed prefix, is not done).
Layers fed the very same tensor (q/k/v projections; gate/up of an MLP) share one
statistics object, which matters for ``XᵀX``: ``in_features²`` floats per group.
Padding tokens in a batch are counted like any other token; calibrate on unpadded
batches (batch size 1) when that matters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, Sequence

import torch
from torch import nn

Method = Literal["asvd", "whiten"]
METHODS: tuple[str, ...] = ("asvd", "whiten")


@dataclass
class InputStatistics:
    """Accumulated over the calibration tokens of one layer's input (float32, on ``device``)."""

    abs_sum: torch.Tensor  # per input channel, sum of |x|
    gram: torch.Tensor | None  # XᵀX, only collected for whitening
    count: int = 0  # tokens seen


@dataclass
class Calibration:
    """Statistics plus the method that turns them into ``compress(..., calibration=)``'s input transforms."""

    method: Method
    statistics: dict[str, InputStatistics] = field(default_factory=dict)
    alpha: float = 0.5  # ASVD's exponent on the mean |x|
    damping: float = 1e-3  # whitening: diagonal damping, relative to the mean diagonal of XᵀX/n
    _last: tuple[int, torch.Tensor] | None = field(default=None, init=False, repr=False, compare=False)  # q/k/v share one factor

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"calibration method must be one of {METHODS}, got {self.method!r}")

    def input_transform(self, name: str) -> torch.Tensor | None:
        """``T`` for layer ``name`` (float64; ASVD: the diagonal as a vector), or None when the layer saw no calibration input."""
        stats = self.statistics.get(name)
        if stats is None or stats.count == 0:
            return None
        if self._last is not None and self._last[0] == id(stats):
            return self._last[1]
        transform = self._transform(name, stats)
        self._last = (id(stats), transform)
        return transform

    def _transform(self, name: str, stats: InputStatistics) -> torch.Tensor:
        if self.method == "asvd":
            return (stats.abs_sum.double() / stats.count).clamp_min(1e-8) ** self.alpha
        if stats.gram is None:
            raise ValueError(f"layer {name}: whitening needs XᵀX; collect the statistics with method='whiten'")
        return whitening_factor(stats.gram.double() / stats.count, self.damping, name)


#: ``CalibrationData(method=..., statistics=...)``: the same class under the brief's name.
CalibrationData = Calibration


def whitening_factor(gram: torch.Tensor, damping: float, name: str = "layer") -> torch.Tensor:
    """Lower Cholesky factor ``S`` of ``gram + λI`` (``S Sᵀ``), ``λ = damping * mean diag``, raised until it factors."""
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    scale = gram.diagonal().mean().clamp_min(1e-12)
    lam = damping * scale
    for _ in range(8):
        factor, info = torch.linalg.cholesky_ex(gram + lam * eye)
        if int(info) == 0:
            return factor
        lam = max(float(lam) * 10, 1e-6 * float(scale))
    raise ValueError(f"{name}: XᵀX is not positive definite even with damping {lam:.3g} (non-finite activations?)")


def collect_input_statistics(
    model: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    layer_names: Iterable[str],
    method: Method = "whiten",
    device: torch.device | str | None = None,
) -> dict[str, InputStatistics]:
    """Run ``model(**batch)`` on each calibration batch and gather input statistics of ``layer_names``.

    ``method="asvd"`` collects only mean |x| (cheap); ``"whiten"`` also ``XᵀX``, which
    serves both methods. Accumulates in float32 on ``device`` (default: where the
    activations are; ``"cpu"`` to spare accelerator memory).
    """
    names = list(layer_names)
    statistics: dict[str, InputStatistics] = {}
    owner: dict[str, str] = {}  # layer -> the layer whose statistics it shares (same input tensor)
    last: list[Any] = [None, None]  # (input tensor, its owner) of the latest hooked call

    def make_hook(name: str):
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0]
            if name not in owner:
                owner[name] = last[1] if last[0] is x else name
                if owner[name] != name:
                    statistics[name] = statistics[owner[name]]
            last[0], last[1] = x, owner[name]
            if owner[name] != name:
                return
            flat = x.detach().reshape(-1, x.shape[-1]).float()
            if device is not None:
                flat = flat.to(device)
            stats = statistics.get(name)
            if stats is None:
                width = flat.shape[-1]
                gram = torch.zeros(width, width, device=flat.device) if method == "whiten" else None
                stats = statistics[name] = InputStatistics(torch.zeros(width, device=flat.device), gram)
            stats.abs_sum += flat.abs().sum(0)
            if stats.gram is not None:
                stats.gram.addmm_(flat.T, flat)
            stats.count += flat.shape[0]

        return hook

    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
    handles = [model.get_submodule(name).register_forward_pre_hook(make_hook(name)) for name in names]
    seen = 0
    try:
        with torch.no_grad():
            for batch in batches:
                last[0] = last[1] = None
                model(**batch)
                seen += 1
    finally:
        for handle in handles:
            handle.remove()
        last[0] = None
    if not seen:
        raise ValueError("no calibration batches")
    return statistics


def calibrate(
    model: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    layer_names: Sequence[str] | None = None,
    method: Method = "whiten",
    alpha: float = 0.5,
    damping: float = 1e-3,
    device: torch.device | str | None = None,
) -> Calibration:
    """Statistics for ``layer_names`` (default: the layers ``compress`` targets by default) from ``batches``."""
    if layer_names is None:
        from compression.lowrank import select_linear_layers

        layer_names = select_linear_layers(model)
    statistics = collect_input_statistics(model, batches, layer_names, method, device)
    return Calibration(method=method, statistics=statistics, alpha=alpha, damping=damping)
