"""Pure pieces of the training harness: sharded resumable batches, labels, DeepSpeed config, settings."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import pytest

from configuration import ConfigError, load_config
from training.batches import ShardPlan
from training.deepspeed_config import deepspeed_config
from training.settings import TrainSettings


def test_shards_are_disjoint_and_cover_an_epoch() -> None:
    plans = [ShardPlan(dataset_size=103, world_size=3, rank=r, micro_batch=4, seed=1) for r in range(3)]
    epoch = [set(i for batch in islice(plan.indices(), plan.batches_per_epoch) for i in batch) for plan in plans]
    assert all(len(rows) == 8 * 4 for rows in epoch)
    assert not (epoch[0] & epoch[1]) and not (epoch[1] & epoch[2]) and not (epoch[0] & epoch[2])


def test_resuming_at_a_batch_continues_the_same_order_across_epochs() -> None:
    plan = ShardPlan(dataset_size=50, world_size=2, rank=1, micro_batch=5, seed=3)
    from_start = list(islice(plan.indices(), 17))  # 5 batches per epoch: crosses three epoch boundaries
    assert list(islice(plan.indices(start_batch=7), 10)) == from_start[7:]
    assert from_start[0] != from_start[5]  # every epoch is reshuffled


def test_too_small_a_dataset_is_refused_with_the_numbers() -> None:
    with pytest.raises(ValueError, match="3 rows.*2 workers x 4"):
        ShardPlan(dataset_size=3, world_size=2, rank=0, micro_batch=4)


def test_deepspeed_config_follows_the_settings() -> None:
    settings = TrainSettings.model_validate(
        {"deepspeed": {"zero_stage": 3, "precision": "bf16", "gradient_accumulation_steps": 4, "offload_optimizer": True},
         "optim": {"micro_batch_size": 8, "grad_clip": 0.5}}
    )
    config = deepspeed_config(settings, world_size=4)
    assert config["train_batch_size"] == 8 * 4 * 4
    assert config["zero_optimization"] == {"stage": 3, "offload_optimizer": {"device": "cpu"}}
    assert config["bf16"]["enabled"] and not config["fp16"]["enabled"]
    assert config["gradient_clipping"] == 0.5


def test_train_section_is_validated_by_key(tmp_path: Path) -> None:
    config = load_config([Path("ray_config.yaml")], ["train.distill.ratio=3", "train.lora.preset=high_capacity"])
    assert config.train.distill.ratio == 3 and config.train.lora.preset == "high_capacity"
    with pytest.raises(ConfigError, match="train.deepspeed.zero_stage"):
        load_config([Path("ray_config.yaml")], ["train.deepspeed.zero_stage=5"])
    with pytest.raises(ConfigError, match="preset"):
        load_config([Path("ray_config.yaml")], ["train.lora.preset=huge"])


def test_labels_cover_only_the_answer(tiny_qwen_dir: Path) -> None:
    from PIL import Image
    from transformers import AutoProcessor

    from training.examples import IGNORE_INDEX, Example, encode_batch

    processor = AutoProcessor.from_pretrained(tiny_qwen_dir)
    examples = [Example(Image.new("RGB", (120, 28), "white"), target="abc"), Example(Image.new("RGB", (300, 28), "white"), target="hello world")]
    for side in ("right", "left"):
        batch = encode_batch(processor, examples, padding_side=side)
        for row, example in enumerate(examples):
            answer = batch["labels"][row][batch["labels"][row] != IGNORE_INDEX]
            assert processor.tokenizer.decode(answer) == example.target + "<|im_end|>"
        assert "mm_token_type_ids" in batch  # Qwen2.5-VL's M-RoPE positions need it
