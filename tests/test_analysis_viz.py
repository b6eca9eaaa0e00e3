"""jedi_core.analysis.viz: the notebooks' figures and viewers draw what they are given (EDM plots of notebook
02, rollout errors of notebook 03, the rollout viewer, GIFs and videos)."""

import io

import matplotlib.pyplot as plt  # the root conftest selects the Agg backend
import numpy as np
import pytest

from jedi_core.analysis.viz import (
    frames_to_gif,
    latent_mosaic,
    plot_error_vs_steps,
    plot_histories,
    plot_learning_curve,
    plot_noise_levels,
    plot_rollout_errors,
    render_rollout_step,
    rollout_viewer,
    show_denoising_trajectories,
)


def test_plot_noise_levels_draws_a_histogram_and_one_line_per_curve():
    grid = np.geomspace(1e-3, 20, 50)
    curves = {"c_skip": 1 / (1 + grid**2), "c_out": grid / np.sqrt(1 + grid**2)}
    figure = plot_noise_levels(np.exp(np.random.default_rng(0).normal(-0.4, 1.2, 1000)), grid, curves,
                               marks={"3-step schedule": [5.0, 0.28, 2e-3]})
    hist_axis, curve_axis = figure.axes
    assert len(hist_axis.patches) == 60 and hist_axis.get_xscale() == "log"
    assert len(curve_axis.lines) == len(curves) + 3  # the curves and one dotted line per marked level
    legend = [t.get_text() for t in curve_axis.get_legend().get_texts()]
    assert legend == ["c_skip", "c_out", "3-step schedule"]
    plt.close(figure)


def test_show_denoising_trajectories_has_two_rows_per_example_and_one_column_per_state():
    states = np.zeros((2, 4, 8, 8, 3), np.uint8)  # 2 examples, 3 steps -> 4 states
    figure = show_denoising_trajectories(states, np.zeros((2, 3, 8, 8, 3), np.uint8), [5.0, 0.28, 2e-3])
    assert len(figure.axes) == 2 * 2 * 4
    titles = [figure.axes[i].get_title() for i in range(4)]
    assert titles == ["sigma = 5", "sigma = 0.28", "sigma = 0.002", "sample"]
    assert sum(len(axis.images) for axis in figure.axes) == 2 * 4 + 2 * 3  # the last D cell stays empty
    plt.close(figure)


def test_plot_error_vs_steps_draws_log_axes_with_one_line_per_label():
    steps = [1, 2, 4, 8]
    panels = {"a": {"x": [1.0, 0.5, 0.25, 0.1], "y": [0.5, 0.2, 0.1, 0.05]}, "b": {"z": [0.3, 0.2, 0.1, 0.1]}}
    figure = plot_error_vs_steps(steps, panels)
    assert len(figure.axes) == 2
    for axis, lines in zip(figure.axes, panels.values(), strict=True):
        assert axis.get_xscale() == "log" and axis.get_yscale() == "log"
        assert len(axis.lines) == len(lines) + 2  # the data, the 1/steps guide and the highlighted step
        assert [t.get_text() for t in axis.get_xticklabels()] == ["1", "2", "4", "8"]
    plt.close(figure)


def test_plot_rollout_errors_draws_one_line_per_model_and_a_dashed_baseline():
    horizon = 5
    errors = {"p = 0": np.linspace(0.1, 1.0, horizon), "p = 0.5": np.linspace(0.1, 0.6, horizon)}
    figure = plot_rollout_errors(errors, baseline=np.linspace(0.2, 1.5, horizon), title="t")
    (axis,) = figure.axes
    legend = [t.get_text() for t in axis.get_legend().get_texts()]
    assert legend == ["p = 0", "p = 0.5", "copy the last latent"]
    assert list(axis.lines[0].get_xdata()) == [1, 2, 3, 4, 5]  # steps count from 1
    np.testing.assert_allclose(axis.lines[1].get_ydata(), errors["p = 0.5"])
    assert axis.lines[2].get_linestyle() == "--"
    assert not axis.collections  # a single run has no band
    plt.close(figure)


def test_plot_rollout_errors_draws_the_mean_and_a_band_over_runs():
    runs = np.array([[0.1, 0.4, 0.9], [0.3, 0.6, 1.1]])
    figure = plot_rollout_errors({"model": runs})
    (axis,) = figure.axes
    np.testing.assert_allclose(axis.lines[0].get_ydata(), runs.mean(axis=0))
    assert axis.get_legend().get_texts()[0].get_text() == "model (mean of 2)"
    assert len(axis.collections) == 1  # the min-max band
    plt.close(figure)


def test_plot_rollout_errors_relative_panel_divides_each_model_by_its_own_first_step():
    errors = {"a": np.array([0.2, 0.4, 0.8]), "b": np.array([0.5, 0.6, 0.7])}
    figure = plot_rollout_errors(errors, baseline=np.array([0.1, 1.0, 2.0]), relative=True)
    _, growth_axis = figure.axes
    assert len(growth_axis.lines) == 2  # the models only: copy-last's growth is motion, not compounding
    np.testing.assert_allclose(growth_axis.lines[0].get_ydata(), [1.0, 2.0, 4.0])
    np.testing.assert_allclose(growth_axis.lines[1].get_ydata(), [1.0, 1.2, 1.4])
    plt.close(figure)


def test_latent_mosaic_tiles_channels_on_a_square_grid():
    latent = np.arange(16 * 2 * 3, dtype=float).reshape(16, 2, 3)
    mosaic = latent_mosaic(latent, gap=1)
    assert mosaic.shape == (4 * 3 - 1, 4 * 4 - 1)
    np.testing.assert_array_equal(mosaic[0:2, 0:3], latent[0])
    np.testing.assert_array_equal(mosaic[3:5, 4:7], latent[5])  # row 1, column 1
    assert np.isnan(mosaic[2, 0]) and np.isnan(mosaic[0, 3])


def _rollout(steps=5, channels=4):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (steps, 64, 64, 3), dtype=np.uint8)
    latents = rng.normal(size=(steps, channels, 8, 8))
    rewards = np.array([0, 0, 1, 0][: steps - 1], dtype=float)
    ends = np.array([False, False, True, False][: steps - 1])
    return frames, latents, rewards, ends


def test_render_rollout_step_draws_frame_latent_and_timeline():
    figure = render_rollout_step(*_rollout(), step=3, actions=[0, 1, 2, 1],
                                 action_names=["NOOP", "LEFT", "RIGHT"])
    frame_axis, latent_axis, time_axis = figure.axes[:3]
    assert "imagined step 3 after RIGHT" in frame_axis.get_title()
    assert "4 channels of 8x8" in latent_axis.get_title() and latent_axis.images[0].get_clim()[1] > 0
    assert len(time_axis.patches) == 4  # one reward bar per transition
    plt.close(figure)


def test_rollout_viewer_slider_swaps_the_picture():
    viewer = rollout_viewer(*_rollout())
    controls, image = viewer.children
    play, slider = controls.children
    assert slider.max == play.max == 4
    first = image.value
    slider.value = 3
    assert image.value != first and image.value[:8] == b"\x89PNG\r\n\x1a\n"
    slider.value = 0
    assert image.value == first


def test_frames_to_gif_keeps_every_frame_and_the_scale():
    from PIL import Image, ImageSequence

    frames = np.zeros((5, 8, 10, 3), np.uint8)
    for t in range(5):
        frames[t, :, t] = 255  # a white column that moves, so no two frames are alike
    gif = Image.open(io.BytesIO(frames_to_gif(frames, fps=10, scale=3)))
    pictures = [np.array(p.convert("RGB")) for p in ImageSequence.Iterator(gif)]
    assert len(pictures) == 5 and pictures[0].shape == (24, 30, 3)
    assert pictures[2][:, 6:9].min() == 255 and pictures[2][:, :6].max() == 0


def test_histories_against_env_steps_draw_records_sharing_a_step_as_their_mean():
    records = [{"env_steps": 100, "loss": 4.0}, {"env_steps": 200, "loss": 2.0},
               {"env_steps": 300, "loss": 1.0}, {"env_steps": 300, "loss": 3.0}]  # a training-only epoch
    figure = plot_histories({"run": records}, ["loss"], x_key="env_steps")
    line = figure.axes[0].lines[0]
    assert list(line.get_xdata()) == [100, 200, 300] and list(line.get_ydata()) == [4.0, 2.0, 2.0]
    plt.close(figure)


def test_every_history_panel_names_its_y_axis_and_takes_a_range_where_given():
    records = [{"entropy": 1.386, "latent_std": 0.2}, {"entropy": 1.384, "latent_std": 0.3}]
    figure = plot_histories({"run": records}, ["entropy", "latent_std"], ylabels=["nats", "std"],
                            ylims={"entropy": (0.0, np.log(4))})
    assert [axis.get_ylabel() for axis in figure.axes] == ["nats", "std"]
    assert figure.axes[0].get_ylim() == pytest.approx((0.0, np.log(4)))  # not a cliff of 0.002 nats
    plt.close(figure)
    figure = plot_histories({"run": records}, ["latent_std"])
    assert figure.axes[0].get_ylabel() == "latent std"  # the key, by default
    plt.close(figure)


def test_the_learning_curve_ends_with_the_final_evaluations_mean_and_standard_error():
    records = [{"env_steps": 100, "eval_return": 1.0}, {"env_steps": 200, "eval_return": 2.0}]
    final = [1.0, 3.0, 5.0, 7.0]
    figure = plot_learning_curve(records, final_returns=final)
    container = next(c for c in figure.axes[0].containers if "final evaluation" in c.get_label())
    point = container.lines[0]
    assert list(point.get_xdata()) == [200] and list(point.get_ydata()) == [4.0]
    low, high = container.lines[2][0].get_segments()[0][:, 1]
    assert np.isclose(high - low, 2 * np.std(final, ddof=1) / 2)  # +- one standard error (n = 4)
    plt.close(figure)


def test_the_learning_curve_marks_the_random_and_untrained_levels_it_is_given():
    records = [{"env_steps": 100, "eval_return": 1.0}]
    figure = plot_learning_curve(records, random=0.5, untrained=0.8)
    levels = {line.get_label(): line.get_ydata()[0] for line in figure.axes[0].lines
              if line.get_label() in ("random policy", "untrained agent")}
    assert levels == {"random policy": 0.5, "untrained agent": 0.8}
    plt.close(figure)
    figure = plot_learning_curve(records, random=0.5)
    assert "untrained agent" not in [line.get_label() for line in figure.axes[0].lines]
    plt.close(figure)
