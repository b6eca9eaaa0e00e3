"""jedi_core.nn.diffusion: EDM preconditioning, noise levels, schedule and sampler, checked against their
formulas and an exact denoiser."""

import math

import pytest
import torch

from jedi_core.config import EDMConfig, SamplerConfig
from jedi_core.nn.diffusion import (
    conditioners,
    denoised_from_output,
    f_target,
    karras_sigmas,
    sample,
    sample_sigma,
)
from jedi_core.presets import make_config
from jedi_core.world_model import build_world_model


@pytest.mark.parametrize("sigma", [2e-3, 0.1, 1.0, 5.0, 20.0])
def test_conditioners_match_their_formulas(sigma):
    sigma_data, offset = 0.5, 0.3
    cs = conditioners(torch.tensor([sigma]), sigma_data, offset)
    s = math.sqrt(sigma**2 + offset**2)  # offset noise folded into sigma
    assert cs.c_in.item() == pytest.approx(1 / math.sqrt(s**2 + sigma_data**2))
    assert cs.c_skip.item() == pytest.approx(sigma_data**2 / (s**2 + sigma_data**2))
    assert cs.c_out.item() == pytest.approx(s * sigma_data / math.sqrt(s**2 + sigma_data**2))
    assert cs.c_noise.item() == pytest.approx(math.log(s) / 4)
    assert cs.c_in.shape == (1, 1, 1, 1) and cs.c_noise.shape == (1,)


def test_a_perfect_network_output_gives_back_the_clean_input():
    clean = torch.randn(4, 3, 8, 8)
    sigma = torch.tensor([0.01, 0.5, 2.0, 10.0])
    noisy = clean + sigma.view(-1, 1, 1, 1) * torch.randn_like(clean)
    cs = conditioners(sigma, 0.5, 0.3)
    torch.testing.assert_close(denoised_from_output(noisy, f_target(clean, noisy, cs), cs), clean)


def test_training_noise_levels_have_the_configured_log_mean_and_std():
    settings = EDMConfig(sigma_loc=-0.4, sigma_scale=1.2, sigma_min=1e-6, sigma_max=1e6)  # no clipping here
    log_sigma = sample_sigma(200_000, settings, generator=torch.Generator().manual_seed(0)).log()
    assert log_sigma.mean().item() == pytest.approx(-0.4, abs=0.01)
    assert log_sigma.std().item() == pytest.approx(1.2, abs=0.01)
    clipped = sample_sigma(10_000, EDMConfig(), generator=torch.Generator().manual_seed(0))
    assert clipped.min() >= 2e-3 and clipped.max() <= 20.0


def test_karras_schedule_runs_from_sigma_max_to_sigma_min_then_zero():
    sigmas = karras_sigmas(10, sigma_min=2e-3, sigma_max=5.0, rho=7.0)
    assert len(sigmas) == 11
    assert sigmas[0].item() == pytest.approx(5.0) and sigmas[-2].item() == pytest.approx(2e-3)
    assert sigmas[-1].item() == 0.0
    assert (sigmas[1:] < sigmas[:-1]).all()
    with pytest.raises(ValueError, match="at least one step"):
        karras_sigmas(0, 2e-3, 5.0, 7.0)


def _gaussian_denoiser(mean, std):
    """The exact D for data ~ N(mean, std^2): E[x | x + sigma * eps] (no offset noise at sampling).
    The sampler gives it one float noise level for the whole batch."""
    def denoise(noisy, sigma):
        assert isinstance(sigma, float)
        shrink = std**2 / (std**2 + sigma**2)
        return mean + shrink * (noisy - mean)
    return denoise


@pytest.mark.parametrize("order, steps", [(1, 200), (2, 30)])
def test_sampler_with_an_exact_denoiser_reproduces_gaussian_data(order, steps):
    mean, std = 0.7, 0.4
    settings = SamplerConfig(num_steps=steps, sigma_max=80.0, order=order, init_noise="sigma_max")
    samples = sample(_gaussian_denoiser(mean, std), (20_000, 4), settings, "cpu",
                     generator=torch.Generator().manual_seed(0))
    assert samples.mean().item() == pytest.approx(mean, abs=0.01)
    assert samples.std().item() == pytest.approx(std, rel=0.03)


def test_diamond_unit_start_noise_under_disperses_on_purpose():
    # Starting at variance 1 instead of sigma_max^2 shrinks what the context does not determine
    # (exactly: std * 1 / sqrt(std^2 + sigma_max^2) for this Gaussian); DIAMOND trades that for less drift.
    mean, std, sigma_max = 0.0, 0.4, 5.0
    settings = SamplerConfig(num_steps=200, sigma_max=sigma_max, init_noise="unit")
    samples = sample(_gaussian_denoiser(mean, std), (20_000, 4), settings, "cpu",
                     generator=torch.Generator().manual_seed(0))
    assert samples.std().item() == pytest.approx(std / math.sqrt(std**2 + sigma_max**2), rel=0.05)


def test_three_euler_steps_return_the_trajectory_and_churn_adds_noise():
    settings = SamplerConfig(num_steps=3)
    final, trajectory = sample(_gaussian_denoiser(0.0, 0.5), (8, 2), settings, "cpu",
                               generator=torch.Generator().manual_seed(0), return_trajectory=True)
    assert len(trajectory) == 4 and torch.equal(trajectory[-1], final)
    deterministic = sample(_gaussian_denoiser(0.0, 0.5), (8, 2), settings, "cpu",
                           generator=torch.Generator().manual_seed(0))
    churned = sample(_gaussian_denoiser(0.0, 0.5), (8, 2), SamplerConfig(num_steps=3, s_churn=1.0), "cpu",
                     generator=torch.Generator().manual_seed(0))
    assert torch.equal(final, deterministic) and not torch.equal(final, churned)


def test_sample_along_samples_each_place_from_its_own_window(monkeypatch):
    """Place j of ``sample_along`` is the sample of x_(j+L) from x_j .. x_(j+L-1) and their actions."""
    denoiser = build_world_model(make_config("smoke"), num_actions=4).denoiser
    length = 3

    def marked_sample(context, actions, generator=None):  # a deterministic sampler that shows its inputs
        weights = torch.arange(1.0, length + 1).view(1, length, 1, 1, 1)
        return (context * weights).sum(1) + 100 * actions.float().sum(1).view(-1, 1, 1, 1)

    monkeypatch.setattr(denoiser, "sample_next", marked_sample)
    sequence, actions = torch.randn(2, 7, 5, 4, 4), torch.randint(0, 4, (2, 6))
    along = denoiser.sample_along(sequence, actions, length)
    assert along.shape == (2, 6 - length + 1, 5, 4, 4)
    for j in range(along.shape[1]):
        expected = marked_sample(sequence[:, j: j + length], actions[:, j: j + length])
        torch.testing.assert_close(along[:, j], expected)
    assert denoiser.sample_along(sequence[:, :3], actions[:, :2], length).shape == (2, 0, 5, 4, 4)
