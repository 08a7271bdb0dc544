"""Pages turned into model inputs ahead of time, on a background thread.

The processor's work (resize, normalise, cut into patches, tokenise) runs on the CPU
and takes tens of milliseconds per megapixel page. Done inline it would sit on the
critical path between decode steps; done here, it overlaps decoding: while the GPU
decodes the pages in the slots, the next pages are already encoded, one at a time, and
a refill collates whichever pages it takes into one left-padded batch (so the vision
tower and the prompt pass still run batched on the GPU).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

#: Inputs with one entry per prompt token: left padded when pages are collated.
SEQUENCE_KEYS = {"input_ids": None, "attention_mask": 0, "mm_token_type_ids": 0, "token_type_ids": 0}


@dataclass
class EncodedPage:
    inputs: dict[str, torch.Tensor]  # the processor's output for this page alone (batch of 1, CPU)

    @property
    def length(self) -> int:
        """Prompt tokens (image tokens included)."""
        return int(self.inputs["attention_mask"].sum())


def collate(pages: Sequence[EncodedPage], pad_id: int) -> dict[str, torch.Tensor]:
    """One batch from single-page inputs: token-wise inputs left padded, the rest (pixels, grids) concatenated.

    Gives the same tensors as one processor call over the pages with ``padding=True``
    and left padding, which ``tests/test_static_decoding.py`` checks.
    """
    if not pages:
        raise ValueError("collate needs at least one page")
    width = max(page.inputs["input_ids"].shape[1] for page in pages)
    batch: dict[str, torch.Tensor] = {}
    for key in pages[0].inputs:
        values = [page.inputs[key] for page in pages]
        if key in SEQUENCE_KEYS:
            fill = pad_id if SEQUENCE_KEYS[key] is None else SEQUENCE_KEYS[key]
            padded = [torch.nn.functional.pad(v, (width - v.shape[1], 0), value=fill) for v in values]
            batch[key] = torch.cat(padded, dim=0)
        else:
            batch[key] = torch.cat(values, dim=0)
    return batch


class EncodeAhead:
    """Encodes requests in the order they will be used, at most ``lookahead`` ahead of the last one taken."""

    def __init__(self, encode: Callable[[int], EncodedPage], order: Sequence[int], lookahead: int):
        self.encode, self.order, self.lookahead = encode, list(order), max(1, lookahead)
        self.position = {request: i for i, request in enumerate(self.order)}
        self.futures: dict[int, Future] = {}
        self.submitted = 0
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode-ahead")

    def get(self, request: int) -> EncodedPage:
        """The encoded page (waits for it if the thread has not got there yet); errors surface here, naming nothing new."""
        self._submit_until(self.position[request] + self.lookahead)
        return self.futures[request].result()

    def take(self, request: int) -> EncodedPage:
        """``get``, then forget the page: its pixels are no longer held once the prompt pass has run."""
        page = self.get(request)
        del self.futures[request]
        return page

    def _submit_until(self, end: int) -> None:
        while self.submitted < min(end, len(self.order)):
            request = self.order[self.submitted]
            self.futures[request] = self.executor.submit(self.encode, request)
            self.submitted += 1

    def close(self) -> None:
        for future in self.futures.values():
            future.cancel()
        self.executor.shutdown(wait=True)
        self.futures.clear()
