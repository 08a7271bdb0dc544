"""Code plugged in by import path: the one way to extend the workers without editing them.

A ``Plugin`` names a class as ``"package.module:Class"`` and the keyword arguments it is
built with. Jobs carry plugins in their (pickled) specs, so the class is imported and built
where the work runs: inside a Ray Train worker or a Tune trial. The tests inject their
faults this way (``tests/fault_hooks.py``), as they plug misbehaving OCR engines in by
import path (``tests/fault_engines.py``); production models carry no test switches.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Plugin(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="package.module:Class")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the class")

    def build(self) -> Any:
        """Import the class and build it; an import error names the target."""
        module_name, attr = self.target.split(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"plugin {self.target}: {exc}") from exc
        return factory(**self.options)
