"""Plotting helpers for the notebooks and reports (kept here so notebooks stay about ideas, not axes)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np

from jedi_core.analysis.metrics import standard_error


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
                        random: float | None = None, random_steps: int = 0, eval_episodes: int | None = None,
                        final_returns: Sequence[float] | None = None, untrained: float | None = None):
    """Evaluation and training returns against env steps, from a run's ``metrics.jsonl`` records.

    ``random_steps`` shades the initial random-policy collection; ``eval_episodes`` labels the evaluations;
    ``final_returns`` (the final evaluation's episodes) end the curve with their mean and standard error;
    ``untrained`` (the untrained agent's mean on the same episodes) and ``random`` are drawn as levels.
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
    if final_returns is not None and len(final_returns) and records:
        count = len(final_returns)
        error = standard_error(final_returns) if count > 1 else 0.0
        axis.errorbar([records[-1]["env_steps"]], [float(np.mean(final_returns))], yerr=[error],
                      color="tab:red", marker="s", capsize=3,
                      label=f"final evaluation ({count} episodes, mean ± s.e.)")
    for value, name, style in ((optimal, "optimal", "--"), (random, "random policy", ":"),
                               (untrained, "untrained agent", "-.")):
        if value is not None:
            axis.axhline(value, color="k", linestyle=style, linewidth=1, label=name)
    axis.set_xlim(left=0)
    axis.set_xlabel("env steps")
    axis.set_ylabel("return")
    axis.set_title(textwrap.fill(title, 64), fontsize=10)  # a long title wraps, never runs off the figure
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


def plot_intervals(summaries: dict[str, dict],
                   names: Sequence[str] = ("mean", "median", "iqm", "optimality_gap")):
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
        # The optimality gap is the one to minimise: how far runs fall short of human level on average.
        title = name.replace("_", " ")
        axis.set_title(f"{title} (lower is better)" if name == "optimality_gap" else title)
        axis.set_yticks(range(len(methods)), methods)
        axis.grid(axis="x", alpha=0.3)
    axes[0][0].invert_yaxis()
    figure.supxlabel("human-normalised score (95% stratified-bootstrap CI)", fontsize=9)
    figure.tight_layout()
    return figure


def render_rollout_step(frames: np.ndarray, latents: np.ndarray, rewards: np.ndarray, ends: np.ndarray,
                        step: int, actions: Sequence[int] | None = None,
                        action_names: Sequence[str] | None = None, limit: float | None = None):
    """One step of an imagined rollout: the probe's picture, the latent's channels, and the predicted
    rewards and ends over the whole rollout with this step marked (notebook 04).

    ``frames`` (T, H, W, 3) uint8 and ``latents`` (T, C, h, w) hold the start and every imagined step;
    ``rewards``, ``ends`` and ``actions`` (T - 1,) belong to the transitions into steps 1..T-1. The latent's
    colours span +-``limit`` (default: the rollout's largest magnitude, so steps compare at one scale).
    """
    import matplotlib.pyplot as plt

    steps = len(frames)
    figure, (frame_axis, latent_axis, time_axis) = plt.subplots(
        1, 3, figsize=(12, 3.4), gridspec_kw={"width_ratios": [1, 1, 1.5]})
    caption = "start (real context)" if step == 0 else f"imagined step {step}"
    if step > 0 and actions is not None:
        action = actions[step - 1]
        caption += f" after {action_names[action] if action_names is not None else action}"
    frame_axis.imshow(frames[step], interpolation="nearest")
    frame_axis.set_title(caption, fontsize=9)
    if limit is None:
        limit = float(np.abs(latents).max()) or 1.0
    latent_axis.imshow(latent_mosaic(latents[step]), cmap="RdBu_r", vmin=-limit, vmax=limit,
                       interpolation="nearest")
    channels, height, width = latents.shape[1:]
    latent_axis.set_title(f"latent: {channels} channels of {height}x{width} (colours +-{limit:.2g})",
                          fontsize=9)
    for axis in (frame_axis, latent_axis):
        axis.set_xticks([])
        axis.set_yticks([])
    transitions = np.arange(1, steps)
    time_axis.bar(transitions, rewards, color=np.where(np.asarray(rewards) >= 0, "tab:green", "tab:red"),
                  label="reward")
    ended = np.flatnonzero(np.asarray(ends, dtype=bool)) + 1
    time_axis.plot(ended, np.zeros(len(ended)), "kx", markersize=10, mew=2, label="end")
    time_axis.axvline(step, color="tab:blue", alpha=0.5, lw=6)
    time_axis.set(xlim=(-0.5, steps - 0.5), ylim=(-1.3, 1.3), xlabel="imagined step")
    time_axis.set_title("predicted rewards and ends (blue: now)", fontsize=9)
    time_axis.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    return figure


def latent_mosaic(latent: np.ndarray, gap: int = 1) -> np.ndarray:
    """(C, h, w) -> one 2-D image with the channels tiled on a near-square grid, NaN gaps between them."""
    channels, height, width = latent.shape
    columns = int(np.ceil(np.sqrt(channels)))
    rows = -(-channels // columns)
    mosaic = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap), np.nan)
    for index in range(channels):
        row, column = divmod(index, columns)
        mosaic[row * (height + gap): row * (height + gap) + height,
               column * (width + gap): column * (width + gap) + width] = latent[index]
    return mosaic


def rollout_viewer(frames: np.ndarray, latents: np.ndarray, rewards: np.ndarray, ends: np.ndarray,
                   actions: Sequence[int] | None = None, action_names: Sequence[str] | None = None,
                   interval_ms: int = 700):
    """An ipywidgets player over an imagined rollout: a play button and a slider over the steps.

    Every step is drawn once, up front (:func:`render_rollout_step`), so scrubbing is instant and needs no
    kernel round trip per frame beyond swapping a PNG. Works in JupyterLab, Jupyter Notebook and Colab.
    """
    import io

    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    pictures = []
    limit = float(np.abs(latents).max()) or 1.0
    for step in range(len(frames)):
        figure = render_rollout_step(frames, latents, rewards, ends, step, actions, action_names, limit)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
        plt.close(figure)
        pictures.append(buffer.getvalue())
    image = widgets.Image(value=pictures[0], format="png")
    slider = widgets.IntSlider(value=0, min=0, max=len(frames) - 1, description="step")
    play = widgets.Play(value=0, min=0, max=len(frames) - 1, interval=interval_ms, description="play")
    widgets.jslink((play, "value"), (slider, "value"))  # the browser moves the slider while playing

    def show(change):
        image.value = pictures[change["new"]]

    slider.observe(show, names="value")
    return widgets.VBox([widgets.HBox([play, slider]), image])


def frames_to_gif(frames: np.ndarray, fps: int = 15, scale: int = 2) -> bytes:
    """uint8 RGB frames (T, H, W, 3) as an animated GIF, upscaled ``scale``x with nearest pixels.

    GIF, not mp4, for showing inside a notebook: every browser plays it, with no codec to match.
    """
    import io

    from PIL import Image

    pictures = [Image.fromarray(frame).resize((frame.shape[1] * scale, frame.shape[0] * scale), Image.NEAREST)
                for frame in frames]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:],
                     duration=round(1000 / fps), loop=0)
    return buffer.getvalue()


def plot_histories(histories: dict[str, Sequence[dict]], keys: Sequence[str],
                   titles: Sequence[str] | None = None, log_scale: Sequence[str] = (),
                   x_key: str | None = None, ylabels: Sequence[str] | None = None,
                   ylims: dict[str, tuple[float, float]] | None = None):
    """One panel per logged key, one line per labelled run: ``{label: [logs of update 0, 1, ...]}``.

    ``x_key`` plots against a logged value (e.g. ``env_steps`` of a run's metrics) instead of the index;
    records that share it (a run's training-only epochs after its step budget) are drawn as their mean, one
    point, not a vertical segment. Each panel's y-axis is labelled (``ylabels``, by default the key) and may
    be given its range (``ylims``, by key: an entropy from 0 to log |A|, not its few hundredths of motion).
    """
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    ylabels = ylabels or [key.replace("_", " ") for key in keys]
    for axis, key, title, ylabel in zip(axes[0], keys, titles or keys, ylabels, strict=True):
        for label, history in histories.items():
            logged = [logs for logs in history if key in logs]
            if x_key:
                by_x: dict[float, list[float]] = {}
                for logs in logged:
                    by_x.setdefault(logs[x_key], []).append(logs[key])
                axis.plot(list(by_x), [float(np.mean(values)) for values in by_x.values()], label=label)
            else:
                axis.plot(range(len(logged)), [logs[key] for logs in logged], label=label)
        axis.set_xlabel(x_key.replace("_", " ") if x_key else "update")
        axis.set_title(title)
        axis.set_ylabel(ylabel)
        if key in log_scale:
            axis.set_yscale("log")
        if ylims and key in ylims:
            axis.set_ylim(*ylims[key])
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_noise_levels(train_sigmas: np.ndarray, grid: np.ndarray, curves: dict[str, np.ndarray],
                      marks: dict[str, Sequence[float]] | None = None, bins: int = 60):
    """EDM noise levels on a log sigma axis: the training sigmas' histogram (left) and ``curves`` over
    ``grid`` (right), e.g. the preconditioning weights; ``marks`` draws labelled sets of levels on both."""
    import matplotlib.pyplot as plt

    figure, (hist_axis, curve_axis) = plt.subplots(1, 2, figsize=(10, 4.4), sharex=True)
    edges = np.geomspace(min(grid.min(), train_sigmas.min()), max(grid.max(), train_sigmas.max()), bins + 1)
    # Equal-width bins in log sigma, each bar the fraction of draws: the bell of ln sigma, undistorted.
    hist_axis.hist(train_sigmas, bins=edges, color="0.6",
                   weights=np.full(len(train_sigmas), 1 / len(train_sigmas)))
    hist_axis.set(xscale="log", xlabel="sigma (log)", ylabel="fraction of draws per bin",
                  title="noise levels drawn for training")
    for name, curve in curves.items():
        curve_axis.plot(grid, curve, label=name)
    curve_axis.set(xlabel="sigma (log)", title="preconditioning over sigma")
    for index, (name, levels) in enumerate((marks or {}).items()):
        style = (":", "--", "-.")[index % 3]  # marks may coincide, so each set also gets its own dash
        for axis in (hist_axis, curve_axis):
            for level_index, level in enumerate(levels):
                axis.axvline(level, color=f"C{index + len(curves)}", linestyle=style, linewidth=1.4,
                             label=name if level_index == 0 else None)
    for axis in (hist_axis, curve_axis):  # below the axes, where they hide no curve
        axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    figure.tight_layout()
    return figure


def show_denoising_trajectories(states: np.ndarray, denoised: np.ndarray, sigmas: Sequence[float],
                                size: float = 1.5):
    """Sampler trajectories as images, two rows per example: the state x at each noise level (and the final
    sample), and the denoiser's guess D(x, sigma) made from it.

    ``states`` is (K, n + 1, H, W, 3) and ``denoised`` (K, n, H, W, 3) uint8, for n steps at ``sigmas``.
    """
    import matplotlib.pyplot as plt

    examples, columns = states.shape[:2]
    figure, axes = plt.subplots(2 * examples, columns, figsize=(columns * size, 2 * examples * size * 1.05),
                                squeeze=False)
    for example in range(examples):
        top, bottom = axes[2 * example], axes[2 * example + 1]
        for column in range(columns):
            top[column].imshow(states[example, column], interpolation="nearest")
            if example == 0:
                top[column].set_title(f"sigma = {sigmas[column]:.3g}" if column < columns - 1 else "sample",
                                      fontsize=9)
            if column < columns - 1:
                bottom[column].imshow(denoised[example, column], interpolation="nearest")
            else:
                bottom[column].axis("off")
        top[0].set_ylabel("x", fontsize=9)
        bottom[0].set_ylabel("D(x, sigma)", fontsize=9)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    return figure


def plot_error_vs_steps(steps: Sequence[int], panels: dict[str, dict[str, Sequence[float]]],
                        ylabel: str = "RMS error", highlight: int | None = 3, slope: bool = True):
    """Error against the number of sampler steps on log-log axes: one panel per title, one line per label.

    ``highlight`` marks a step count (JEDI's 3); ``slope`` adds a dotted 1/steps guide (a first-order
    method's error) through each panel's first line at its last point.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    steps = np.asarray(steps, dtype=float)
    figure, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.4), squeeze=False)
    for axis, (title, lines) in zip(axes[0], panels.items(), strict=True):
        for label, errors in lines.items():
            axis.plot(steps, errors, "o-", label=label)
        if slope:
            last = np.asarray(next(iter(lines.values())), dtype=float)[-1]
            axis.plot(steps, last * steps[-1] / steps, "k:", linewidth=1, label="1 / steps (first order)")
        if highlight is not None:
            axis.axvline(highlight, color="0.5", linewidth=6, alpha=0.3, label=f"{highlight} steps (JEDI)")
        axis.set(xscale="log", yscale="log", xlabel="Euler steps (denoiser calls)", ylabel=ylabel,
                 title=title)
        axis.set_xticks(steps, [f"{s:g}" for s in steps])
        axis.xaxis.set_minor_locator(NullLocator())  # only the measured step counts on x
        axis.grid(alpha=0.3, which="both")
        # Below the axes: never on a line.
        axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    figure.tight_layout()
    return figure


def plot_rollout_errors(errors: dict[str, np.ndarray], baseline: np.ndarray | None = None,
                        baseline_label: str = "copy the last latent", ylabel: str = "MSE / latent variance",
                        title: str = "", relative: bool = False):
    """Open-loop prediction error against the number of imagined steps, one line per labelled model.

    Each array is (H,) for one run or (runs, H) for several; several are drawn as their mean with a band
    from the lowest to the highest run. ``baseline`` (same shapes) is drawn dashed in grey. ``relative``
    adds a second panel with each model's error divided by its own step-1 error: how much errors compound.
    """
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2 if relative else 1, figsize=(11.0 if relative else 6.4, 4.0),
                                squeeze=False)
    models = {label: np.atleast_2d(np.asarray(values, dtype=float)) for label, values in errors.items()}
    panels = [(axes[0][0], dict(models), ylabel, title)]
    if baseline is not None:
        panels[0][1][baseline_label] = np.atleast_2d(np.asarray(baseline, dtype=float))
    if relative:
        growth = {label: runs / runs[:, :1] for label, runs in models.items()}
        panels.append((axes[0][1], growth, "error / the same model's step-1 error", "growth of the error"))
    for axis, curves, label_y, panel_title in panels:
        for label, runs in curves.items():
            style = {"linestyle": "--", "color": "0.45"} if label == baseline_label else {"marker": "o"}
            steps = np.arange(1, runs.shape[1] + 1)
            suffix = f" (mean of {len(runs)})" if len(runs) > 1 else ""
            (line,) = axis.plot(steps, runs.mean(axis=0), label=label + suffix, markersize=4, **style)
            if len(runs) > 1:
                axis.fill_between(steps, runs.min(axis=0), runs.max(axis=0), color=line.get_color(),
                                  alpha=0.15, linewidth=0)
        axis.set(xlabel="imagined steps (open loop, real actions)", ylabel=label_y, title=panel_title)
        axis.set_xlim(left=0.5)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    return figure
