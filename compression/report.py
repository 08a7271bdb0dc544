"""What a compressed checkpoint folder carries besides its weights: the rank table and the spectra picture."""

from __future__ import annotations

import json
from pathlib import Path

from compression.lowrank import CompressionStats

STATS_FILE = "compression.json"
SPECTRA_FILE = "singular_values.png"


def write_compression_report(stats: CompressionStats, folder: str | Path, title: str | None = None) -> dict[str, Path]:
    """``folder/compression.json`` (per-layer rank, parameters, error, energy kept; skipped layers and why) and
    ``folder/singular_values.png`` (``compression.spectra``); returns both paths."""
    from compression.spectra import plot_spectra

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / STATS_FILE
    table.write_text(json.dumps(stats.to_dict(), indent=2) + "\n")
    return {"table": table, "spectra": plot_spectra(stats, folder / SPECTRA_FILE, title)}
