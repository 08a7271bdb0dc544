"""How many inference threads an engine runs when its options leave it to the runtime (``threads: 0``).

Inside a Ray actor that is the CPUs Ray reserved for it: Ray exports them to every task
and actor as ``OMP_NUM_THREADS`` (the reservation rounded down, at least 1), the usual
thread hint of numerical libraries. onnxruntime and OpenVINO do not read it, and left
alone each actor would size its pools to the whole node, so actors sharing a node
would oversubscribe its cores. Outside Ray, with no hint set, 0 keeps the runtime's
default (all cores).
"""

from __future__ import annotations

import os


def inference_threads(requested: int) -> int:
    """``requested`` if set, else ``OMP_NUM_THREADS`` (Ray sets it per actor), else 0: the runtime's default."""
    if requested:
        return requested
    hint = os.environ.get("OMP_NUM_THREADS", "")
    return int(hint) if hint.isdigit() and int(hint) > 0 else 0
