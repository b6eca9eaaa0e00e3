"""Plotting helpers for the notebooks and reports (kept here so notebooks stay about ideas, not axes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def show_frames(frames: Sequence[np.ndarray] | np.ndarray, titles: Sequence[str] | None = None,
                columns: int = 8, size: float = 1.6, highlight: Sequence[bool] | None = None):
    """A grid of uint8 RGB frames with optional titles; ``highlight`` draws a red border on chosen frames."""
    import matplotlib.pyplot as plt

    frames = list(frames)
    rows = max(1, -(-len(frames) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * size, rows * size * 1.1), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.set_xticks([])
        axis.set_yticks([])
        if index >= len(frames):
            axis.axis("off")
            continue
        axis.imshow(frames[index], interpolation="nearest")
        if titles is not None:
            axis.set_title(titles[index], fontsize=8)
        if highlight is not None and highlight[index]:
            for spine in axis.spines.values():
                spine.set_edgecolor("red")
                spine.set_linewidth(3)
    figure.tight_layout()
    return figure
