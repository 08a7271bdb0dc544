"""The ``train`` section of ``ray_config.yaml``: one typed place for every training knob.

The three training jobs (reference model, PELA distillation, LoRA fine-tuning) share the
harness settings (workers, DeepSpeed, optimiser, checkpoints, data); each job also has its
own subsection. Everything here can be overridden with ``--set train.key=value``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from compression.settings import DistillationWeights, LowRankSettings
from training.data.sources import ColumnMap
from training.data.synthetic import SyntheticConfig
from training.examples import DEFAULT_OCR_PROMPT
from training.lora import LoraSettings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ScalingSettings(_Strict):
    num_workers: int = Field(2, ge=1, description="Ray Train workers (one process each; one GPU each with use_gpu)")
    use_gpu: bool = Field(False, description="train on GPUs (NCCL) instead of CPUs (gloo)")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per worker; also its torch thread count")


class DeepSpeedSettings(_Strict):
    zero_stage: int = Field(2, ge=0, le=3, description="ZeRO stage (2 shards optimiser state and gradients; 3 also parameters)")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="training precision (bf16 on GPUs that have it)")
    gradient_accumulation_steps: int = Field(1, ge=1, description="micro-batches per optimiser step")
    offload_optimizer: bool = Field(False, description="ZeRO-Offload: keep optimiser state in CPU memory")


class OptimSettings(_Strict):
    micro_batch_size: int = Field(16, ge=1, description="examples per worker per micro-batch")
    learning_rate: float = Field(1e-4, gt=0, description="peak learning rate of AdamW")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup_steps: int = Field(50, ge=0, description="linear warm-up, then cosine decay to 0 at max_steps")
    max_steps: int = Field(500, ge=1, description="optimiser steps of the run (unless epochs is set)")
    epochs: float | None = Field(
        None, gt=0, description="passes over the train split instead of max_steps: the job derives the steps from the split's "
        "size, the workers, micro_batch_size and gradient accumulation, and prints how many that is"
    )
    grad_clip: float = Field(1.0, ge=0, description="gradient-norm clip (0: off)")
    seed: int = Field(0, description="model init, data order and dropout")


class CheckpointSettings(_Strict):
    every_steps: int = Field(100, ge=1, description="checkpoint (and report metrics) every K optimiser steps")
    log_every_steps: int = Field(25, ge=0, description="print rank 0's loss every N steps (0: only at checkpoints)")
    keep: int = Field(2, ge=1, description="checkpoints kept in storage")
    storage_path: str = Field(
        "./ray_results", description="where Ray Train writes checkpoints; shared storage (NFS, s3://...) on a multi-node cluster"
    )
    max_failures: int = Field(2, ge=-1, description="worker-failure retries, each resuming from the latest checkpoint (-1: forever)")


class DataSettings(_Strict):
    train_split: str = Field("train", description="split used for training")
    eval_split: str = Field("val", description="split evaluated at checkpoints and at the end")
    columns: ColumnMap = Field(default_factory=ColumnMap, description="dataset column names (image, text, question, choices, answer)")
    eval_samples: int = Field(128, ge=0, description="examples evaluated (CER) at each checkpoint and at the end")
    max_new_tokens: int = Field(48, ge=1, description="generation budget when evaluating")
    prompt: str = Field(DEFAULT_OCR_PROMPT, description="instruction for rows without a question")


class ReferenceSettings(_Strict):
    """The from-scratch reference OCR model: a small Qwen2.5-VL."""

    hidden_size: int = Field(256, description="language model width")
    num_layers: int = Field(4, description="language model blocks")
    num_heads: int = 4
    num_kv_heads: int = 2
    vision_depth: int = Field(4, description="vision tower blocks")
    vision_hidden_size: int = Field(128, description="vision tower width")
    vision_heads: int = 4
    min_pixels: int = Field(28 * 28, description="processor pixel floor")
    max_pixels: int = Field(28 * 28 * 24, description="processor pixel cap (a 28 px line up to 672 px wide)")
    image_mean: float = Field(
        1.0,
        description=(
            "processor normalisation mean; 1.0 maps white paper to 0, so a patch's features come from its ink only "
            "(with CLIP's mean the paper dominates every patch and a model trained from scratch does not learn to read)"
        ),
    )
    image_std: float = Field(0.5, gt=0, description="processor normalisation std")
    rope_theta: float = Field(
        100.0, gt=0, description="rotary base; short sequences (about 80 tokens) want fast-turning frequencies"
    )
    mrope_section: list[int] | None = Field(
        None,
        description=(
            "rotary frequency pairs for the time, height and width position axes (sum: head dim / 2; null: 2, 2 "
            "and the rest to width). Text tokens use all three alike; what tells image columns apart is the width "
            "share, and M-RoPE gives the width axis the slowest frequencies, so with Qwen2.5-VL's quarter share a "
            "small model cannot tell the k-th column from the next and does not learn reading order"
        ),
    )
    synthetic: SyntheticConfig = Field(
        default_factory=lambda: SyntheticConfig(width=672, fonts=["DejaVuSansMono.ttf"], pitch=28, font_size=(22, 26)),
        description=(
            "the lines it learns to read: DejaVu Sans Mono at a 28 px character pitch (one visual token per "
            "character), on a fixed 672 px canvas (24 visual tokens)"
        ),
    )
    optim: OptimSettings = Field(
        default_factory=lambda: OptimSettings(micro_batch_size=16, learning_rate=3e-4, warmup_steps=50, max_steps=600),
        description=(
            "a from-scratch run needs its own optimiser settings (used instead of train.optim); at a learning rate "
            "of 1e-3 or more this model never gets past guessing from the language prior"
        ),
    )
    splits: dict[str, int] = Field(default_factory=lambda: {"train": 20000, "val": 500, "test": 1000}, description="synthetic lines per split")

    def shape(self) -> dict[str, Any]:
        """Keyword arguments of ``vlm.tiny.save_tiny_qwen2_5_vl``."""
        shape = self.model_dump(exclude={"synthetic", "splits", "optim"})
        if shape["mrope_section"] is None:
            half_head_dim = self.hidden_size // self.num_heads // 2
            shape["mrope_section"] = [2, 2, half_head_dim - 4]
        return shape


class DistillSettings(LowRankSettings):
    """PELA distillation: the student is the teacher factored per ``LowRankSettings``, then trained to match it."""

    trainable: Literal["all", "lowrank"] = Field(
        "all",
        description="all: every student parameter trains; lowrank: only the low-rank factors (PELA's 'freeze most "
        "parameters': norms, embeddings, heads and layers left dense stay as the teacher has them)",
    )
    task_weight: float = Field(1.0, ge=0, description="weight of the task cross-entropy")
    weights: DistillationWeights = Field(default_factory=DistillationWeights, description="hidden MSE, logit KL, weight perturbation")


class TrainSettings(_Strict):
    trust_remote_code: bool = Field(
        False, description="run the checkpoint's own modelling code (the published dots.ocr ships some); --trust-remote-code"
    )
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)
    deepspeed: DeepSpeedSettings = Field(default_factory=DeepSpeedSettings)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    reference: ReferenceSettings = Field(default_factory=ReferenceSettings)
    distill: DistillSettings = Field(default_factory=DistillSettings)
    lora: LoraSettings = Field(default_factory=LoraSettings, description="the adapter jobs.finetune_lora trains")

    def steps_for_epochs(self, dataset_size: int) -> int:
        """Optimiser steps that make ``optim.epochs`` passes over ``dataset_size`` rows (at least one)."""
        if self.optim.epochs is None:
            raise ValueError("optim.epochs is not set")
        micro_batches = dataset_size // (self.scaling.num_workers * self.optim.micro_batch_size)  # per worker, as ShardPlan
        return max(1, math.ceil(self.optim.epochs * micro_batches / self.deepspeed.gradient_accumulation_steps))
