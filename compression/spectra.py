"""The picture PELA users look at before they trust a ratio: each layer's singular values and what the rank keeps.

One panel per kind of layer (the layer name with its block number taken out, e.g.
``model.layers.N.mlp.down_proj``), one curve per block coloured by depth: singular values
relative to the largest, on a log scale, with a dot at the kept rank. The panel title gives
the share of the spectrum's energy (sum of squared singular values) the kept ranks retain;
a last panel shows that share for every layer in model order, so a layer that loses much
more than its neighbours stands out.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path

from compression.lowrank import CompressionStats, LayerStats

_BLOCK_NUMBER = re.compile(r"\.(\d+)(?=\.)")
MAX_COLUMNS = 4


def layer_kind(name: str) -> tuple[str, int]:
    """``model.layers.3.mlp.up_proj`` -> (``model.layers.N.mlp.up_proj``, 3): the kind and the (first) block number."""
    numbers = _BLOCK_NUMBER.findall(name)
    return _BLOCK_NUMBER.sub(".N", name), int(numbers[0]) if numbers else 0


def plot_spectra(stats: CompressionStats, path: str | Path, title: str | None = None) -> Path:
    """Write the spectra of ``stats``' factored layers (``compress`` records them) as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    layers = [layer for layer in stats.layers if layer.singular_values]
    if not layers:
        raise ValueError("no factored layer with a recorded spectrum: nothing to plot (was any layer compressed?)")
    kinds: dict[str, list[tuple[int, LayerStats]]] = defaultdict(list)
    for layer in layers:
        kind, block = layer_kind(layer.name)
        kinds[kind].append((block, layer))
    panels = len(kinds) + 1
    columns = min(MAX_COLUMNS, panels)
    rows = math.ceil(panels / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.3 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    colormap = plt.get_cmap("viridis")
    for ax, (kind, members) in zip(flat, kinds.items()):
        deepest = max(block for block, _ in members) or 1
        for block, layer in sorted(members, key=lambda item: item[0]):
            top = layer.singular_values[0] or 1.0
            relative = [max(value / top, 1e-12) for value in layer.singular_values]
            color = colormap(block / deepest)
            ax.plot(range(1, len(relative) + 1), relative, color=color, linewidth=0.9)
            ax.plot([layer.rank], [relative[layer.rank - 1]], "o", color=color, markersize=3.5)
        kept = [layer.energy_kept for _, layer in members]
        ax.set_yscale("log")
        ax.set_title(f"{kind}\nrank {_span([layer.rank for _, layer in members])}, energy kept {_span_percent(kept)}", fontsize=8)
        ax.set_xlabel("singular value index", fontsize=8)
        ax.set_ylabel("σ / σ₁", fontsize=8)
        ax.tick_params(labelsize=7)
    overview = flat[len(kinds)]
    overview.bar(range(len(layers)), [100 * layer.energy_kept for layer in layers], width=1.0, color="tab:blue")
    overview.set_ylim(0, 100)
    overview.set_title(f"energy kept per layer (model order), mean {100 * _mean([layer.energy_kept for layer in layers]):.1f} %", fontsize=8)
    overview.set_xlabel("compressed layer", fontsize=8)
    overview.set_ylabel("% of σ² kept", fontsize=8)
    overview.tick_params(labelsize=7)
    for ax in flat[panels:]:
        ax.axis("off")
    ratio = f"ratio {stats.ratio:g}" if stats.ratio else "full rank"
    figure.suptitle(title or f"PELA {ratio}, {stats.method}: {len(layers)} layers; dots mark the kept rank", fontsize=10)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _span(values: list[int]) -> str:
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}–{high}"


def _span_percent(values: list[float]) -> str:
    low, high = 100 * min(values), 100 * max(values)
    return f"{low:.1f} %" if round(low, 1) == round(high, 1) else f"{low:.1f}–{high:.1f} %"
