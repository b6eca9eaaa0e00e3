"""The EDM plotting helpers of notebook 02 draw what they are given."""

import matplotlib.pyplot as plt  # the root conftest selects the Agg backend
import numpy as np

from jedi_core.viz import plot_error_vs_steps, plot_noise_levels, show_denoising_trajectories


def test_plot_noise_levels_draws_a_histogram_and_one_line_per_curve():
    grid = np.geomspace(1e-3, 20, 50)
    curves = {"c_skip": 1 / (1 + grid**2), "c_out": grid / np.sqrt(1 + grid**2)}
    figure = plot_noise_levels(np.exp(np.random.default_rng(0).normal(-0.4, 1.2, 1000)), grid, curves,
                               marks={"3-step schedule": [5.0, 0.28, 2e-3]})
    hist_axis, curve_axis = figure.axes
    assert len(hist_axis.patches) == 60 and hist_axis.get_xscale() == "log"
    assert len(curve_axis.lines) == len(curves) + 3  # the curves and one dotted line per marked level
    assert [t.get_text() for t in curve_axis.get_legend().get_texts()] == ["c_skip", "c_out", "3-step schedule"]
    plt.close(figure)


def test_show_denoising_trajectories_has_two_rows_per_example_and_one_column_per_state():
    states = np.zeros((2, 4, 8, 8, 3), np.uint8)  # 2 examples, 3 steps -> 4 states
    figure = show_denoising_trajectories(states, np.zeros((2, 3, 8, 8, 3), np.uint8), [5.0, 0.28, 2e-3])
    assert len(figure.axes) == 2 * 2 * 4
    assert [figure.axes[i].get_title() for i in range(4)] == ["sigma = 5", "sigma = 0.28", "sigma = 0.002", "sample"]
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
