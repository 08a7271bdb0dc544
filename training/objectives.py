"""What a training step minimises: the task loss, or PELA's distillation loss.

Pure PyTorch: the Ray Train loop calls ``objective(model, batch)`` and backpropagates the
returned loss through whatever wrapper (DeepSpeed, DDP) holds the model.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from compression.losses import DistillationWeights, distillation_loss


class Objective(Protocol):
    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to backpropagate and its parts as floats, for logging."""


class TaskObjective:
    """Next-token cross-entropy on the answer tokens (labels masked elsewhere)."""

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        loss = model(**batch).loss
        return loss, {"task_ce": float(loss.detach())}


class DistillObjective:
    """PELA: task CE + hidden-state MSE + logit KL against a frozen teacher + weight perturbation.

    ``student`` is the unwrapped low-rank model (the regulariser looks its layers up by
    name in the teacher, which holds the dense weights they replaced).
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, weights: DistillationWeights, task_weight: float = 1.0):
        self.teacher = teacher.eval().requires_grad_(False)
        self.student = student
        self.weights = weights
        self.task_weight = task_weight

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        need_hidden = self.weights.hidden_mse > 0
        student_out = model(**batch, output_hidden_states=need_hidden)
        with torch.no_grad():
            teacher_out = self.teacher(**batch, output_hidden_states=need_hidden)
        distill, parts = distillation_loss(
            student_out, teacher_out, self.student, self.weights, attention_mask=batch.get("attention_mask"), reference=self.teacher
        )
        loss = self.task_weight * student_out.loss + distill
        parts["task_ce"] = float(student_out.loss.detach())
        return loss, parts
