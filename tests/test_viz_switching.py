"""The rollout-error plot of notebook 03 draws what it is given."""

import matplotlib.pyplot as plt  # the root conftest selects the Agg backend
import numpy as np

from jedi_core.viz import plot_rollout_errors


def test_plot_rollout_errors_draws_one_line_per_model_and_a_dashed_baseline():
    horizon = 5
    errors = {"p = 0": np.linspace(0.1, 1.0, horizon), "p = 0.5": np.linspace(0.1, 0.6, horizon)}
    figure = plot_rollout_errors(errors, baseline=np.linspace(0.2, 1.5, horizon), title="t")
    (axis,) = figure.axes
    assert [t.get_text() for t in axis.get_legend().get_texts()] == ["p = 0", "p = 0.5", "copy the last latent"]
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
