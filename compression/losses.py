"""Distillation losses that recover a low-rank student from its dense teacher (PELA).

* ``hidden_state_mse``: MSE between student and teacher hidden states, averaged over the
  blocks (PELA's feature distillation, ``L_fm`` in its code, which recovers more than
  logits alone). With ``output_hidden_states=True`` a Qwen2.5-VL returns the language
  model's input embeddings and every block's output; entry 0 is kept by default, since
  at image positions it is the (compressed) vision tower's output.
* ``logit_kl``: KL(teacher ‖ student) of temperature-softened next-token distributions,
  times T² so the gradient scale does not shrink with the temperature (Hinton et al.).
  PELA's classification code uses an MSE on logits; a KL is the usual choice for a
  generative language model.
* ``weight_perturbation``: PELA's regulariser, the mean over low-rank layers of
  ``(‖up·down − W‖∞ − ε)²``, which keeps every factored layer close to the weight it
  replaced. As in PELA's code (``torch.norm(rebuild - W, float('inf'))`` on the matrix,
  which flattens it) ``‖·‖∞`` is the largest absolute entry, not the matrix ∞-norm.

Where ``W`` comes from: ``compress(..., keep_original=True)`` stores it on each
``LowRankLinear`` as the non-persistent buffer ``original_weight`` (in memory only, never
in a checkpoint). A student loaded from a compressed checkpoint has no such buffer; pass
``reference=`` (the teacher model, or a dict of dense weights by layer name) instead.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from compression.lowrank import low_rank_layers
from compression.settings import DistillationWeights


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the last dim, then over positions where ``mask`` (batch x seq) is 1."""
    per_position = values.mean(-1)
    if mask is None:
        return per_position.mean()
    weights = mask.to(device=per_position.device, dtype=per_position.dtype)
    if weights.shape != per_position.shape:
        raise ValueError(f"attention mask of shape {tuple(mask.shape)} does not fit values of shape {tuple(values.shape)}")
    return (per_position * weights).sum() / weights.sum().clamp_min(1)


def hidden_state_mse(
    student_hidden: Sequence[torch.Tensor],
    teacher_hidden: Sequence[torch.Tensor],
    layers: Sequence[int] | None = None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over blocks (all, or the indices in ``layers``) of the MSE between hidden states.

    ``attention_mask`` (batch x seq) leaves padding positions out.
    """
    if len(student_hidden) != len(teacher_hidden):
        raise ValueError(f"student has {len(student_hidden)} hidden states, teacher {len(teacher_hidden)}")
    indices = range(len(student_hidden)) if layers is None else layers
    losses = [
        _masked_mean((student_hidden[i].float() - teacher_hidden[i].detach().float().to(student_hidden[i].device)) ** 2, attention_mask)
        for i in indices
    ]
    if not losses:
        raise ValueError("no hidden states to compare")
    return torch.stack([loss.to(losses[0].device) for loss in losses]).mean()


def logit_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """KL(teacher ‖ student) per position over the vocabulary at ``temperature``, times T², mean over positions."""
    student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.detach().float().to(student.device) / temperature, dim=-1)
    per_position = F.kl_div(student, teacher, reduction="none", log_target=True).sum(-1, keepdim=True)
    return _masked_mean(per_position, attention_mask) * temperature**2


def weight_perturbation(model: nn.Module, epsilon: float = 1e-3, reference: nn.Module | Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Mean over ``LowRankLinear`` layers of ``(max |up·down − W| − ε)²`` (PELA).

    ``W``: ``reference`` (the dense teacher, whose module of the same name holds it, or a
    dict name -> weight) when given, else each layer's ``original_weight`` buffer.
    """
    terms = []
    for name, layer in low_rank_layers(model).items():
        original = _original_weight(name, layer, reference)
        deviation = (layer.reconstructed_weight().float() - original.detach().float().to(layer.up.weight.device)).abs().max()
        terms.append((deviation - epsilon) ** 2)
    if not terms:
        raise ValueError("model has no LowRankLinear layers")
    return torch.stack([term.to(terms[0].device) for term in terms]).mean()


def _original_weight(name: str, layer: nn.Module, reference: nn.Module | Mapping[str, torch.Tensor] | None) -> torch.Tensor:
    if reference is None:
        original = getattr(layer, "original_weight", None)
        if original is None:
            raise ValueError(f"layer {name} has no original_weight: compress with keep_original=True, or pass reference=teacher")
        return original
    if isinstance(reference, nn.Module):
        try:
            return reference.get_submodule(name).weight
        except AttributeError:
            raise ValueError(f"reference model has no dense layer {name}") from None
    if name not in reference:
        raise ValueError(f"reference weights have no entry {name}")
    return reference[name]


def distillation_loss(
    student_out: Any,
    teacher_out: Any,
    model: nn.Module,
    weights: DistillationWeights | None = None,
    attention_mask: torch.Tensor | None = None,
    reference: nn.Module | Mapping[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the three losses, and each part as a float for logging.

    ``student_out``/``teacher_out``: model outputs with ``logits`` and (for the hidden
    MSE) ``hidden_states``; ``model`` is the student; parts with weight 0 are not computed.
    """
    weights = weights or DistillationWeights()
    parts: dict[str, torch.Tensor] = {}
    if weights.hidden_mse:
        if student_out.hidden_states is None or teacher_out.hidden_states is None:
            raise ValueError("hidden_mse needs outputs computed with output_hidden_states=True")
        parts["hidden_mse"] = hidden_state_mse(student_out.hidden_states, teacher_out.hidden_states, attention_mask=attention_mask)
    if weights.logit_kl:
        parts["logit_kl"] = logit_kl(student_out.logits, teacher_out.logits, weights.temperature, attention_mask)
    if weights.weight_perturbation:
        parts["weight_perturbation"] = weight_perturbation(model, weights.epsilon, reference)
    if not parts:
        raise ValueError("every distillation weight is 0")
    device = next(iter(parts.values())).device
    total = sum(getattr(weights, key) * value.to(device) for key, value in parts.items())
    return total, {key: float(value.detach()) for key, value in parts.items()}
