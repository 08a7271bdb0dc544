"""The DeepSpeed config dict of a run, from the ``train`` settings.

DeepSpeed's JSON config is its public interface; building it here from validated settings
keeps every knob in ``ray_config.yaml`` and out of hand-edited JSON files.
"""

from __future__ import annotations

from typing import Any

from training.settings import TrainSettings


def deepspeed_config(settings: TrainSettings, world_size: int) -> dict[str, Any]:
    """ZeRO stage, precision, accumulation and batch sizes; the optimiser and scheduler come from torch."""
    ds = settings.deepspeed
    micro = settings.optim.micro_batch_size
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": ds.gradient_accumulation_steps,
        "train_batch_size": micro * ds.gradient_accumulation_steps * world_size,
        "gradient_clipping": settings.optim.grad_clip,
        "zero_optimization": {"stage": ds.zero_stage},
        "zero_allow_untested_optimizer": True,  # a torch AdamW: same optimiser on CPU and GPU
        "bf16": {"enabled": ds.precision == "bf16"},
        "fp16": {"enabled": ds.precision == "fp16"},
        "steps_per_print": 10**9,  # progress is reported through Ray Train
        "wall_clock_breakdown": False,
    }
    if ds.offload_optimizer and ds.zero_stage >= 1:
        config["zero_optimization"]["offload_optimizer"] = {"device": "cpu"}
    return config
