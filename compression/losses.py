"""Distillation losses that recover a compressed student from its original teacher (PELA).

* ``hidden_state_mse``: per-block hidden states of student and teacher, MSE averaged over
  blocks: feature distillation, which PELA found recovers more than logits alone;
* ``logit_kl``: KL(teacher ‖ student) of temperature-softened distributions, times T²
  so its gradient scale does not shrink with the temperature;
* ``weight_perturbation``: PELA's regulariser, mean over low-rank layers of
  ``(‖up·down − W‖∞ − ε)²``, which keeps the factors close to the original weight.
  ``‖·‖∞`` is the largest absolute entry of the difference. The original weight is the
  non-persistent ``original_weight`` buffer that ``compress(..., keep_original=True)``
  stores (not written to checkpoints).

Each has a weight in ``DistillationWeights`` (the training config embeds it).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from compression.lowrank import low_rank_layers


class DistillationWeights(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden_mse: float = Field(1.0, ge=0, description="weight of the per-block hidden-state MSE")
    logit_kl: float = Field(1.0, ge=0, description="weight of the KL divergence on logits")
    weight_perturbation: float = Field(0.1, ge=0, description="weight of PELA's weight-perturbation regulariser")
    temperature: float = Field(2.0, gt=0, description="softmax temperature of the logit KL")
    epsilon: float = Field(0.0, ge=0, description="tolerance of the weight-perturbation regulariser")


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over positions (all leading dims but the last), counting only mask==1 positions."""
    per_position = values.mean(-1)
    if mask is None:
        return per_position.mean()
    weights = mask.to(per_position.dtype)
    return (per_position * weights).sum() / weights.sum().clamp_min(1)


def hidden_state_mse(
    student_hidden: Sequence[torch.Tensor], teacher_hidden: Sequence[torch.Tensor], attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over blocks of the MSE between hidden states (tuples from ``output_hidden_states=True``)."""
    if len(student_hidden) != len(teacher_hidden):
        raise ValueError(f"student has {len(student_hidden)} hidden states, teacher {len(teacher_hidden)}")
    losses = [_masked_mean((s.float() - t.float().detach()) ** 2, attention_mask) for s, t in zip(student_hidden, teacher_hidden)]
    return torch.stack(losses).mean()


def logit_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """KL(teacher ‖ student) per position over the vocabulary, temperature-softened, times T²."""
    student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.float().detach() / temperature, dim=-1)
    per_token = (teacher.exp() * (teacher - student)).sum(-1, keepdim=True)
    return _masked_mean(per_token, attention_mask) * temperature**2


def weight_perturbation(model: nn.Module, epsilon: float = 0.0) -> torch.Tensor:
    """Mean over ``LowRankLinear`` layers of (‖up·down − W‖∞ − ε)²; W from their ``original_weight`` buffer."""
    terms = []
    for name, layer in low_rank_layers(model).items():
        original = getattr(layer, "original_weight", None)
        if original is None:
            raise ValueError(f"layer {name} has no original_weight: compress with keep_original=True to use this regulariser")
        deviation = (layer.reconstructed_weight().float() - original.float()).abs().max()
        terms.append((deviation - epsilon) ** 2)
    if not terms:
        raise ValueError("model has no LowRankLinear layers")
    return torch.stack(terms).mean()


def distillation_loss(
    student_out: Any, teacher_out: Any, model: nn.Module, weights: DistillationWeights, attention_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the three losses from model outputs (with hidden states and logits); parts for logging."""
    parts: dict[str, torch.Tensor] = {}
    if weights.hidden_mse:
        parts["hidden_mse"] = hidden_state_mse(student_out.hidden_states, teacher_out.hidden_states, attention_mask)
    if weights.logit_kl:
        parts["logit_kl"] = logit_kl(student_out.logits, teacher_out.logits, weights.temperature, attention_mask)
    if weights.weight_perturbation:
        parts["weight_perturbation"] = weight_perturbation(model, weights.epsilon)
    total = sum(getattr(weights, key) * value for key, value in parts.items())
    return total, {key: float(value.detach()) for key, value in parts.items()}
