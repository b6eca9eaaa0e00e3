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


def plot_learning_curve(records: Sequence[dict], title: str = "", optimal: float | None = None,
                        random: float | None = None, random_steps: int = 0, eval_episodes: int | None = None):
    """Evaluation and training returns against env steps, from a run's ``metrics.jsonl`` records.

    ``random_steps`` shades the initial random-policy collection; ``eval_episodes`` labels the evaluations.
    """
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.6))
    evaluated = [r for r in records if "eval_return" in r]
    trained = [r for r in records if "train_return" in r]
    if random_steps:
        axis.axvspan(0, random_steps, color="0.92", label="random-policy collection")
    if trained:
        axis.plot([r["env_steps"] for r in trained], [r["train_return"] for r in trained], color="0.6",
                  label="training episodes (last 20, epsilon 0.01)")
    if evaluated:
        axis.plot([r["env_steps"] for r in evaluated], [r["eval_return"] for r in evaluated], "o-",
                  color="tab:blue", label=f"evaluation ({eval_episodes or '?'} episodes, sampled policy)")
    for value, name, style in ((optimal, "optimal", "--"), (random, "random policy", ":")):
        if value is not None:
            axis.axhline(value, color="k", linestyle=style, linewidth=1, label=name)
    axis.set_xlim(left=0)
    axis.set_xlabel("env steps")
    axis.set_ylabel("return")
    axis.set_title(title)
    axis.legend(fontsize=8, loc="center left")  # over the random-collection phase, where no curve is yet
    figure.tight_layout()
    return figure


def plot_hns_by_game(hns_by_game: dict[str, float], human_optimal: Sequence[str], title: str = ""):
    """Per-game HNS as bars sorted by value, Human-Optimal games in one colour and Agent-Optimal in another.

    A symlog axis: linear up to human level (HNS 1), logarithmic beyond, so both halves stay readable.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    games = sorted(hns_by_game, key=hns_by_game.get)
    colours = ["tab:orange" if game in human_optimal else "tab:blue" for game in games]
    figure, axis = plt.subplots(figsize=(max(6.0, 0.38 * len(games) + 2), 3.8))
    axis.bar(range(len(games)), [hns_by_game[g] for g in games], color=colours)
    axis.set_yscale("symlog", linthresh=1.0)
    ticks = [t for t in (0, 0.25, 0.5, 1, 2, 5, 10, 20, 50) if t <= max(1.0, max(hns_by_game.values())) * 1.5]
    axis.set_yticks(ticks, [f"{t:g}" for t in ticks])
    axis.axhline(1.0, color="k", linestyle="--", linewidth=0.8)
    axis.set_xticks(range(len(games)), games, rotation=70, ha="right", fontsize=8)
    axis.set_ylabel("HNS (symlog)")
    axis.set_title(title)
    axis.legend(handles=[Patch(color="tab:orange", label="Human-Optimal half"),
                         Patch(color="tab:blue", label="Agent-Optimal half"),
                         plt.Line2D([], [], color="k", linestyle="--", label="human level")], fontsize=8)
    figure.tight_layout()
    return figure


def plot_intervals(summaries: dict[str, dict], names: Sequence[str] = ("mean", "median", "iqm", "optimality_gap")):
    """rliable-style interval plot: one panel per aggregate, a point and its 95% CI per method."""
    import matplotlib.pyplot as plt

    methods = list(summaries)
    figure, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 0.45 * len(methods) + 1.2),
                                sharey=True, squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        for row, method in enumerate(methods):
            low, high = summaries[method][f"{name}_ci"]
            axis.plot([low, high], [row, row], linewidth=6, alpha=0.5, color=f"C{row}")
            axis.plot(summaries[method][name], row, "|", color="k", markersize=12)
        axis.set_title(name.replace("_", " "))
        axis.set_yticks(range(len(methods)), methods)
        axis.grid(axis="x", alpha=0.3)
    axes[0][0].invert_yaxis()
    figure.supxlabel("human-normalised score (95% stratified-bootstrap CI)", fontsize=9)
    figure.tight_layout()
    return figure


def plot_histories(histories: dict[str, Sequence[dict]], keys: Sequence[str], titles: Sequence[str] | None = None,
                   log_scale: Sequence[str] = ()):
    """One panel per logged key, one line per labelled run: ``{label: [logs of update 0, 1, ...]}``."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for axis, key, title in zip(axes[0], keys, titles or keys, strict=True):
        for label, history in histories.items():
            axis.plot([logs[key] for logs in history], label=label)
        axis.set_xlabel("update")
        axis.set_title(title)
        if key in log_scale:
            axis.set_yscale("log")
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure
