"""Deterministic, resumable, sharded batches over a map-style dataset.

Each worker reads its own shard of a dataset that every worker can open (Arrow files on
shared storage are memory-mapped, so nothing is copied to the driver). The order is a pure
function of ``(seed, epoch)``, so a run resumed at optimiser step ``s`` continues with
exactly the batches it would have seen, without decoding the skipped ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from training.data.records import Record
from training.examples import Example, record_prompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardPlan:
    """Which rows rank ``rank`` of ``world_size`` reads, ``micro_batch`` rows at a time."""

    dataset_size: int
    world_size: int
    rank: int
    micro_batch: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset_size < self.world_size * self.micro_batch:
            raise ValueError(
                f"dataset has {self.dataset_size} rows, fewer than one batch for every worker "
                f"({self.world_size} workers x {self.micro_batch})"
            )

    @property
    def batches_per_epoch(self) -> int:
        return self.dataset_size // (self.world_size * self.micro_batch)

    def epoch_order(self, epoch: int) -> list[int]:
        import torch

        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.dataset_size, generator=generator).tolist()

    def indices(self, start_batch: int = 0) -> Iterator[list[int]]:
        """Row indices of this rank's micro-batches, forever, starting at micro-batch ``start_batch``."""
        epoch, offset = divmod(start_batch, self.batches_per_epoch)
        while True:
            order = self.epoch_order(epoch)
            for batch in range(offset, self.batches_per_epoch):
                first = (batch * self.world_size + self.rank) * self.micro_batch
                yield order[first : first + self.micro_batch]
            epoch, offset = epoch + 1, 0


def record_from_row(row: dict[str, Any], columns: Any, base_dir: Path | str = ".") -> Record:
    """A ``Record`` from a dataset row, by the configured column names (see ``training.data.sources``)."""
    from training.data.sources import row_to_record

    return row_to_record(row, columns, Path(base_dir), meta={})


def to_example(record: Record, prompt: str) -> Example:
    """The training example of a record; a multiple-choice item's target is its gold choice."""
    target = record.text
    if record.choices and record.answer is not None:
        target = record.choices[int(record.answer)]
    return Example(image=record.image, prompt=record_prompt(record.question, record.choices, prompt), target=target)


def batch_iterator(
    dataset: Sequence[dict[str, Any]],
    plan: ShardPlan,
    encode: Callable[[list[Example]], dict[str, Any]],
    columns: Any,
    prompt: str,
    start_batch: int = 0,
    base_dir: Path | str = ".",
) -> Iterator[dict[str, Any]]:
    """Encoded micro-batches for one rank, from micro-batch ``start_batch`` on.

    A row that cannot be read (a broken image) is left out of its batch with a warning
    naming it; the batch is smaller, the run goes on.
    """
    from training.data.sources import RowError

    for indices in plan.indices(start_batch):
        examples = []
        for index in indices:
            try:
                examples.append(to_example(record_from_row(dataset[index], columns, base_dir), prompt))
            except RowError as error:
                log.warning("skipping row %d of the training data: %s", index, error)
        if examples:
            yield encode(examples)


def calibration_batches(data_dir: str, settings: Any) -> Callable[[Any], list[dict[str, Any]]]:
    """Activation-aware SVD's calibration batches: the same rows wherever they are drawn (any rank, the driver)."""
    from training.data.sources import DatasetSpec, load_dataset_from_spec
    from training.examples import encode_batch

    def batches(processor: Any) -> list[dict[str, Any]]:
        dataset = load_dataset_from_spec(DatasetSpec(path=data_dir, split=settings.data.train_split, columns=settings.data.columns))
        plan = ShardPlan(len(dataset), 1, 0, settings.optim.micro_batch_size, seed=settings.optim.seed + 1)
        source = batch_iterator(dataset, plan, lambda ex: encode_batch(processor, ex), settings.data.columns, settings.data.prompt)
        return [next(source) for _ in range(settings.distill.calibration_batches)]

    return batches
