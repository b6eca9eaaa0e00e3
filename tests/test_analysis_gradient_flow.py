"""jedi_core.analysis.gradient_flow: each loss's gradient reaches exactly the networks the method says, as
autograd measures it (the drawing shows what was measured)."""

import matplotlib.pyplot as plt
import pytest

from jedi_core.analysis.gradient_flow import gradient_reach, plot_gradient_flow
from jedi_core.replay import sample_contexts, sample_diffusion_batch, sample_reward_end_batch


@pytest.mark.parametrize("preset, networks", [
    ("smoke", {"encoder", "denoiser", "reward/end model", "actor-critic"}),
    ("smoke_diamond", {"denoiser", "reward/end model", "actor-critic"}),  # the pixel model has no encoder
])
def test_each_loss_reaches_exactly_the_networks_it_trains(preset, networks, smoke_setup, trained_like):
    cfg, agent, replay, rng = smoke_setup(preset)
    trained_like(agent)  # non-zero output layers: every path that exists carries a gradient
    batches = {part: sample(replay, cfg.world_model, rng, cfg.replay.sample_weights).to_torch("cpu")
               for part, sample in (("diffusion", sample_diffusion_batch),
                                    ("reward_end", sample_reward_end_batch))}
    contexts = sample_contexts(replay, 4, agent.world_model.context_length, rng, cfg.replay.sample_weights,
                               "cpu")
    reach = gradient_reach(agent, batches, contexts)
    reached = {loss: {name for name, norm in norms.items() if norm > 0} for loss, norms in reach.items()}
    assert set(reach["diffusion loss"]) == networks
    encoder = {"encoder"} & networks
    assert reached["diffusion loss"] == {"denoiser"} | encoder
    assert reached["reward/end loss"] == {"reward/end model"} | encoder
    assert reached["actor-critic loss"] == {"actor-critic"}  # imagination sends nothing into the world model
    assert all(p.grad is None for p in agent.parameters())
    figure = plot_gradient_flow(reach)
    arrows = [text for text in figure.axes[0].texts if getattr(text, "arrow_patch", None) is not None]
    assert len(arrows) == sum(len(names) for names in reached.values())  # one arrow per measured path
    plt.close(figure)


def test_the_data_flow_picture_shows_the_gradients_the_code_sends():
    """``assets/data_flow.json`` (the dashed arrows of ``assets/data_flow.png``) equals what autograd
    measures now on the shipped Krull agent: rerun ``python tools/data_flow.py`` when the code changes it."""
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("data_flow", root / "tools" / "data_flow.py")
    data_flow = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(data_flow)
    measured = data_flow.measure_arrows()
    assert json.loads(data_flow.ARROWS.read_text()) == measured
    assert measured["diffusion loss"][:2] == ["encoder", "denoiser"]  # the context latents reach the encoder
    assert measured["actor-critic loss"] == ["actor-critic"]  # imagination sends nothing into the world model
    figure = data_flow.draw(measured)
    arrows = [text for text in figure.axes[0].texts if getattr(text, "arrow_patch", None) is not None]
    forward = len(data_flow.FORWARD) + 1  # and the imagination arrow
    assert len(arrows) == forward + sum(len(networks) for networks in measured.values())
