"""Compression settings that config files hold; torch-free so loading a config stays light."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DistillationWeights(BaseModel):
    """Loss weights and knobs; defaults from PELA's code where it has one."""

    model_config = ConfigDict(extra="forbid")

    hidden_mse: float = Field(1.0, ge=0, description="per-block hidden-state MSE (PELA DeiT: kd_alpha=1)")
    logit_kl: float = Field(1.0, ge=0, description="KL(teacher||student) on the logits")
    weight_perturbation: float = Field(1.0, ge=0, description="PELA's weight-perturbation regulariser (PELA ALBEF: weight 1)")
    temperature: float = Field(1.0, gt=0, description="softmax temperature of the logit KL (DeiT distillation tau: 1)")
    epsilon: float = Field(1e-3, ge=0, description="tolerance of the weight-perturbation regulariser (PELA inf_norm_eps: 1e-3)")
