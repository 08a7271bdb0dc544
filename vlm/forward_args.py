"""What a model's ``forward`` accepts, for code that calls it directly (static decoding, the FLOP counter).

transformers renamed the KV-cache argument from ``past_key_values`` to ``cache`` in 5.25
(the old name works, deprecated, until 5.40), and remote code written for older versions
(the published dots.ocr) names ``past_key_values`` itself and may lack ``logits_to_keep``.
Reading the signature picks what works on the model at hand, from transformers 5.17 on.
"""

from __future__ import annotations

import inspect
from typing import Any


def _parameters(model: Any) -> Any:
    try:
        return inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}


def cache_keyword(model: Any) -> str:
    """``cache`` where ``forward`` names it so, else ``past_key_values``."""
    return "cache" if "cache" in _parameters(model) else "past_key_values"


def logits_to_keep(model: Any) -> dict[str, int]:
    """``{"logits_to_keep": 1}`` where the model's forward takes it (transformers' own models; remote code may not)."""
    return {"logits_to_keep": 1} if "logits_to_keep" in _parameters(model) else {}


def output_cache(output: Any) -> Any:
    """The KV cache a forward returned: ``cache`` from transformers 5.25 on, ``past_key_values`` before and in remote code."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)
