"""PELA low-rank compression: each targeted ``nn.Linear`` becomes two thin factors from a truncated SVD.

``W (out x in) ~= up (out x r) @ down (r x in)``, with the square root of the singular
values on each side, so both factors have similar scales (the distillation that follows
trains both, as in PELA, Guo et al., CVPR 2024). For a compression ratio ``ratio`` the
rank is PELA's ``r = in*out // (ratio*(in+out))``: the factors hold ``r*(in+out)``
weights, ``1/ratio`` of the original. Layers where low rank saves nothing are left
alone and reported as skipped.

The factors are two plain ``nn.Linear`` modules, so ``save_pretrained``, peft,
DeepSpeed and the FLOP counter see ordinary layers.

Which layers
    ``target_modules``: a tower (``"language"``, ``"vision"``, ``"both"``), resolved against
    the model's family in ``vlm.families`` (decoder blocks; vision blocks and projector),
    or name patterns, each a shell-style ``fnmatch`` pattern matched
    against the whole module name (``"*.mlp.*"``) or, prefixed with ``re:``, a regular
    expression that must match the whole name (``re:.*layers\\.(0|1)\\..*``, like peft's
    ``target_modules``). ``None`` means every ``nn.Linear``. ``exclude_modules`` (same
    pattern syntax) removes layers again; the default ``DEFAULT_EXCLUDE`` follows what
    PELA's code keeps dense (``name_omit=['norm', 'head', 'patch_embed', 'downsample']``
    for DeiT/Swin, and layers with fewer than 10 outputs): output heads, embeddings,
    norms, the patch embedding; their errors reach every token or the logits directly.
    Linear layers whose weight is tied to another parameter (an ``lm_head`` tied to the
    embeddings) are never factored: the tie would silently break.

Activation-aware factorisation (ASVD scaling, SVD-LLM whitening) is
``compression.calibration``; pass its ``Calibration`` as ``compress(..., calibration=)``.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, NamedTuple, Sequence

import torch
from torch import nn

#: Never factored by default (PELA's omitted names, in this project's architectures' spelling).
DEFAULT_EXCLUDE: tuple[str, ...] = (
    "*lm_head*",  # output head: its error lands on the logits unfiltered
    "*head",  # classification/projection heads (PELA: 'head')
    "*embed*",  # token and patch embeddings (PELA: 'patch_embed')
    "*norm*",  # norms hold no Linear in these models, kept for other architectures (PELA: 'norm')
    "*downsample*",  # Swin-style patch merging (PELA: 'downsample')
    "*classifier*",
)

#: Layers with fewer outputs than this are left dense (PELA skips ``out_features < 10``: small heads).
MIN_OUT_FEATURES = 10

class LowRankLinear(nn.Module):
    """``up(down(x))``: a rank-``r`` stand-in for an ``nn.Linear`` (bias kept on ``up``).

    With ``compress(..., keep_original=True)`` it also holds the replaced weight as the
    non-persistent buffer ``original_weight`` (for the weight-perturbation regulariser;
    never written by ``state_dict``/``save_pretrained``).
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True, device: Any = None, dtype: Any = None):
        super().__init__()
        if not 1 <= rank <= min(in_features, out_features):
            raise ValueError(f"rank {rank} outside 1..{min(in_features, out_features)} for a {in_features}->{out_features} layer")
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.up = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def reconstructed_weight(self) -> torch.Tensor:
        """``up.weight @ down.weight``: the dense weight this layer computes (differentiable)."""
        return self.up.weight @ self.down.weight

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, input_transform: torch.Tensor | None = None) -> LowRankLinear:
        """Factor ``linear`` at ``rank`` (see ``factorize``); same device and dtype, bias copied."""
        return cls.from_factors(linear, factorize(linear.weight, rank, input_transform))

    @classmethod
    def from_factors(cls, linear: nn.Linear, factors: Factorization) -> LowRankLinear:
        """The layer computing ``factors`` in place of ``linear``: same device and dtype, bias copied."""
        weight, (up, down, _) = linear.weight, factors
        rank = down.shape[0]
        layer = cls(linear.in_features, linear.out_features, rank, linear.bias is not None, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            layer.up.weight.copy_(up)
            layer.down.weight.copy_(down)
            if linear.bias is not None:
                layer.up.bias.copy_(linear.bias)
        layer.requires_grad_(weight.requires_grad)
        return layer

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


@dataclass
class LayerStats:
    """One factored layer. ``relative_error`` is ``||W - up@down||_F / ||W||_F`` (in the layer's dtype)."""

    name: str
    in_features: int
    out_features: int
    rank: int
    params_before: int
    params_after: int
    relative_error: float
    method: str = "svd"
    energy_kept: float = 1.0  # sum of the kept squared singular values / sum of all of them
    singular_values: list[float] = field(default_factory=list, repr=False)  # of the matrix factored (for the spectra plot)


@dataclass
class CompressionStats:
    """What ``compress`` did: per-layer records, skipped layers with the reason, parameter totals."""

    ratio: float | None
    method: str
    layers: list[LayerStats] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # targeted layer name -> why it stayed dense
    model_params_before: int = 0
    model_params_after: int = 0

    @property
    def targeted_params_before(self) -> int:
        return sum(layer.params_before for layer in self.layers)

    @property
    def targeted_params_after(self) -> int:
        return sum(layer.params_after for layer in self.layers)

    @property
    def kept_fraction(self) -> float:
        """Parameters of the factored layers after / before (about ``1/ratio``)."""
        return self.targeted_params_after / self.targeted_params_before if self.layers else 1.0

    @property
    def mean_relative_error(self) -> float:
        return sum(layer.relative_error for layer in self.layers) / len(self.layers) if self.layers else 0.0

    @property
    def ranks(self) -> dict[str, int]:
        return {layer.name: layer.rank for layer in self.layers}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data, totals included."""
        data = asdict(self)
        for layer in data["layers"]:
            del layer["singular_values"]  # thousands of floats per layer: the spectra plot reads them from the stats
        data.update(
            targeted_params_before=self.targeted_params_before,
            targeted_params_after=self.targeted_params_after,
            kept_fraction=self.kept_fraction,
            mean_relative_error=self.mean_relative_error,
        )
        return data


def rank_for_ratio(in_features: int, out_features: int, ratio: float | None, min_rank: int = 1, max_rank: int | None = None) -> int:
    """PELA's rank ``in*out // (ratio*(in+out))``, clamped to [min_rank, max_rank] and to 1..min(in, out).

    ``ratio=None`` asks for full rank, ``min(in, out)`` (exact, but saves nothing).
    """
    full = min(in_features, out_features)
    if ratio is None:
        return full
    if ratio <= 0:
        raise ValueError(f"compression ratio must be positive, got {ratio}")
    rank = int(in_features * out_features // (ratio * (in_features + out_features)))
    rank = max(rank, min_rank)
    if max_rank is not None:
        rank = min(rank, max_rank)
    return max(1, min(rank, full))


def _matcher(patterns: Iterable[str]):
    compiled = []
    for pattern in patterns:
        if pattern.startswith("re:"):
            compiled.append(re.compile(pattern[3:]).fullmatch)
        else:
            compiled.append(lambda name, p=pattern: fnmatch.fnmatchcase(name, p))
    return lambda name: any(match(name) for match in compiled)


def resolve_targets(target_modules: str | Sequence[str] | None, model: nn.Module | None = None) -> tuple[str, ...]:
    """Tower name or patterns -> patterns (``None`` -> every layer).

    A tower (``language``, ``vision``, ``both``) is resolved against ``model``'s family in
    ``vlm.families``: its decoder blocks, its vision blocks and projector. A family whose
    vision tower has no transformer blocks (Gemma 3n) is refused with the reason.
    """
    from vlm.families import TOWERS, family_of

    if target_modules is None:
        return ("*",)
    if isinstance(target_modules, str):
        if target_modules in TOWERS:
            if model is None:
                raise ValueError(f"target_modules {target_modules!r} names a tower: resolving it needs the model")
            return family_of(model).tower_patterns(target_modules, with_projector=True)
        return (target_modules,)
    return tuple(target_modules)


def select_linear_layers(
    model: nn.Module, target_modules: str | Sequence[str] | None = None, exclude_modules: Iterable[str] = DEFAULT_EXCLUDE
) -> list[str]:
    """Names of the ``nn.Linear`` modules matched by ``target_modules`` and not by ``exclude_modules``."""
    patterns = resolve_targets(target_modules, model)
    excluded = tuple(exclude_modules)
    targeted, skip = _matcher(patterns), _matcher(excluded)
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear) and targeted(name) and not skip(name)]
    if not names:
        raise ValueError(f"no nn.Linear layer matches target_modules={list(patterns)} outside exclude_modules={list(excluded)}")
    return names


class Factorization(NamedTuple):
    """``up @ down ~= W``, and the singular values of the matrix factored (all of them, descending, float32)."""

    up: torch.Tensor
    down: torch.Tensor
    singular_values: torch.Tensor

    @property
    def energy_kept(self) -> float:
        """Share of the squared singular values the kept rank holds (1.0 at full rank)."""
        energy = self.singular_values.double().square()
        return float(energy[: self.down.shape[0]].sum() / energy.sum().clamp_min(1e-300))


def factorize(weight: torch.Tensor, rank: int, input_transform: torch.Tensor | None = None) -> Factorization:
    """Truncated SVD on the weight's device: ``up`` and ``down`` in the weight's dtype with ``up @ down ~= weight``.

    Plain: SVD of ``W`` in float32, ``up = U_r sqrt(S_r)``, ``down = sqrt(S_r) V_r^T``.
    ``input_transform`` ``T`` (in x in and invertible, or a vector meaning ``diag(T)``)
    makes the truncation optimal for the outputs ``W x`` on calibration inputs instead of
    for ``W`` itself: factor ``W T``, then fold ``T^-1`` into ``down`` (ASVD's channel
    scaling and SVD-LLM's whitening are both this; see ``compression.calibration``). That
    path runs in float64, since ``T`` can be badly conditioned.
    """
    if input_transform is None:
        matrix = weight.detach().float()
    else:
        transform = input_transform.to(device=weight.device, dtype=torch.float64)
        matrix = weight.detach().double() * transform if transform.dim() == 1 else weight.detach().double() @ transform
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    root = s[:rank].sqrt()
    up = u[:, :rank] * root
    down = root[:, None] * vh[:rank]
    if input_transform is not None:
        down = _right_solve(down, transform)
    return Factorization(up.to(weight.dtype), down.to(weight.dtype), s.detach().float().cpu())


def _right_solve(matrix: torch.Tensor, transform: torch.Tensor) -> torch.Tensor:
    """``matrix @ T^-1`` without forming the inverse (``T`` diagonal as a vector, lower triangular, or general)."""
    if transform.dim() == 1:
        return matrix / transform
    if torch.equal(transform, transform.tril()):  # a Cholesky factor
        return torch.linalg.solve_triangular(transform, matrix, upper=False, left=False)
    return torch.linalg.solve(transform, matrix, left=False)


def compress(
    model: nn.Module,
    ratio: float | None,
    target_modules: str | Sequence[str] | None = None,
    exclude_modules: Iterable[str] = DEFAULT_EXCLUDE,
    min_rank: int = 1,
    max_rank: int | None = None,
    calibration: Any | None = None,
    keep_original: bool = False,
) -> CompressionStats:
    """Replace the targeted ``nn.Linear`` layers of ``model`` in place by ``LowRankLinear`` factors.

    ``ratio``: PELA's compression ratio (3 keeps about a third of the targeted weights);
    ``None`` means full rank (reproduces the outputs to float tolerance; for tests and for
    distillation from an exact start). A layer whose rank would not save parameters
    (``r*(in+out) >= in*out``), with fewer than ``MIN_OUT_FEATURES`` outputs, or with a
    tied weight stays dense and is listed in ``stats.skipped`` with the reason.
    ``calibration``: a ``compression.calibration.Calibration`` (ASVD or whitening) from
    the uncompressed model; layers it has no statistics for get plain SVD.
    ``keep_original``: store each replaced weight as the non-persistent buffer
    ``original_weight`` (for ``compression.losses.weight_perturbation``; costs the memory
    of the original weights, saves nothing to disk).
    """
    params_before = sum(p.numel() for p in model.parameters())
    stats = CompressionStats(ratio=ratio, method=getattr(calibration, "method", "svd"))
    shared = _shared_parameters(model)
    for name in select_linear_layers(model, target_modules, exclude_modules):
        layer: nn.Linear = model.get_submodule(name)
        in_features, out_features = layer.in_features, layer.out_features
        rank = rank_for_ratio(in_features, out_features, ratio, min_rank, max_rank)
        if id(layer.weight) in shared:
            stats.skipped[name] = "weight is tied to another parameter"
            continue
        if out_features < MIN_OUT_FEATURES:
            stats.skipped[name] = f"only {out_features} outputs (head)"
            continue
        if ratio is not None and rank * (in_features + out_features) >= in_features * out_features:
            stats.skipped[name] = f"rank {rank} would not save parameters ({rank * (in_features + out_features)} >= {in_features * out_features})"
            continue
        transform = calibration.input_transform(name) if calibration is not None else None
        factors = factorize(layer.weight, rank, transform)
        replacement = LowRankLinear.from_factors(layer, factors)
        with torch.no_grad():
            original = layer.weight.detach().float()
            error = float((original - replacement.reconstructed_weight().float()).norm() / original.norm().clamp_min(1e-12))
        if keep_original:
            replacement.register_buffer("original_weight", layer.weight.detach().clone(), persistent=False)
        set_submodule(model, name, replacement)
        stats.layers.append(
            LayerStats(
                name,
                in_features,
                out_features,
                rank,
                params_before=sum(p.numel() for p in layer.parameters()),
                params_after=sum(p.numel() for p in replacement.parameters()),
                relative_error=error,
                method=stats.method if transform is not None else "svd",
                energy_kept=factors.energy_kept,
                singular_values=factors.singular_values.tolist(),
            )
        )
    stats.model_params_before = params_before
    stats.model_params_after = sum(p.numel() for p in model.parameters())
    return stats


def low_rank_layers(model: nn.Module) -> dict[str, LowRankLinear]:
    """Every ``LowRankLinear`` in ``model`` by module name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, LowRankLinear)}


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """``model.<name> = module`` for a dotted name."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)



def _shared_parameters(model: nn.Module) -> set[int]:
    """ids of parameters reachable under more than one name (tied weights)."""
    seen: dict[int, int] = {}
    for _, parameter in model.named_parameters(remove_duplicate=False):
        seen[id(parameter)] = seen.get(id(parameter), 0) + 1
    return {key for key, count in seen.items() if count > 1}
