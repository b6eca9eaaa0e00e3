"""jedi_core.nn.actor_critic: lambda-returns, the policy and value heads, and the REINFORCE loss."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Categorical

from jedi_core.nn.actor_critic import ActorCritic, lambda_returns, reinforce_loss


def _naive_lambda_returns(rewards, next_values, ends, truncations, gamma, lam):
    """The textbook recursion, one number at a time."""
    batch, steps = len(rewards), len(rewards[0])
    out = [[0.0] * steps for _ in range(batch)]
    for b in range(batch):
        for t in reversed(range(steps)):
            if ends[b][t]:
                out[b][t] = rewards[b][t]
            elif truncations[b][t] or t == steps - 1:
                out[b][t] = rewards[b][t] + gamma * next_values[b][t]
            else:
                out[b][t] = rewards[b][t] + gamma * ((1 - lam) * next_values[b][t] + lam * out[b][t + 1])
    return out


@pytest.mark.parametrize("seed", range(5))
def test_lambda_returns_match_a_naive_reference_with_ends_and_truncations(seed):
    rng = np.random.default_rng(seed)
    rewards = rng.choice([-1.0, 0.0, 1.0], size=(6, 15))
    next_values = rng.normal(size=(6, 15))
    ends = rng.random((6, 15)) < 0.1
    truncations = (rng.random((6, 15)) < 0.1) & ~ends
    expected = _naive_lambda_returns(rewards.tolist(), next_values.tolist(), ends.tolist(),
                                     truncations.tolist(), 0.985, 0.95)
    got = lambda_returns(*(torch.tensor(a) for a in (rewards, next_values, ends, truncations)), 0.985, 0.95)
    np.testing.assert_allclose(got.numpy(), np.array(expected), rtol=1e-10)


def test_lambda_returns_limits():
    rewards, values = torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([[0.5, 0.25, 4.0]])
    no_flags = torch.zeros(1, 3, dtype=torch.bool)
    one_step = lambda_returns(rewards, values, no_flags, no_flags, gamma=0.9, lambda_=0.0)
    torch.testing.assert_close(one_step, rewards + 0.9 * values)  # lambda 0: TD(0) targets
    monte_carlo = lambda_returns(rewards, values, no_flags, no_flags, gamma=0.9, lambda_=1.0)
    expected_first = 1.0 + 0.9 * 0.0 + 0.81 * (2.0 + 0.9 * 4.0)
    assert monte_carlo[0, 0].item() == pytest.approx(expected_first)


def test_zero_initialised_heads_give_a_uniform_policy_and_zero_value():
    model = ActorCritic(in_channels=16, in_size=8, num_actions=6, channels=(8, 16), downsample=(0, 1),
                        lstm_dim=32)
    inputs = torch.randn(5, 16, 8, 8)
    logits, value, _ = model(inputs, model.initial_state(5))
    torch.testing.assert_close(logits.softmax(-1), torch.full((5, 6), 1 / 6))
    torch.testing.assert_close(value, torch.zeros(5))


def test_epsilon_and_temperature_shape_the_action_distribution():
    torch.manual_seed(0)
    model = ActorCritic(3, 64, num_actions=4, channels=(4, 4, 8, 8), downsample=(1, 1, 1, 1), lstm_dim=8)
    torch.nn.init.normal_(model.actor.weight, std=0.1)
    with torch.no_grad():
        model.actor.bias.copy_(torch.tensor([0.0, 0.5, 0.0, 1.0]))  # a clear best action, others close
    inputs = torch.randn(1, 3, 64, 64).expand(4000, -1, -1, -1)
    generator = torch.Generator().manual_seed(0)
    greedy_ish, _ = model.act(inputs, model.initial_state(4000), temperature=0.05, generator=generator)
    assert (greedy_ish == greedy_ish.mode().values).float().mean() > 0.99
    random, _ = model.act(inputs, model.initial_state(4000), epsilon=1.0, generator=generator)
    counts = torch.bincount(random, minlength=4).float() / 4000
    assert (counts - 0.25).abs().max() < 0.04


def test_reinforce_loss_pushes_up_actions_with_positive_advantage():
    logits = torch.zeros(1, 3, requires_grad=True)
    values = torch.zeros(1)
    loss, logs = reinforce_loss(logits, values, torch.tensor([2]), torch.tensor([1.0]), entropy_weight=0.0)
    loss.backward()
    assert logits.grad[0, 2] < 0 and logits.grad[0, :2].gt(0).all()  # gradient descent raises action 2
    assert logs["entropy"] == pytest.approx(math.log(3))


def test_masked_reinforce_loss_equals_the_loss_on_the_boolean_indexed_steps():
    """The masked means give the same policy loss as indexing the alive steps first."""
    generator = torch.Generator().manual_seed(1)
    logits, values = torch.randn(4, 6, 3, generator=generator), torch.randn(4, 6, generator=generator)
    actions, returns = torch.randint(3, (4, 6), generator=generator), torch.randn(4, 6, generator=generator)
    alive = torch.rand(4, 6, generator=generator) > 0.4
    loss, logs = reinforce_loss(logits, values, actions, returns, 0.01, mask=alive)
    distribution = Categorical(logits=logits[alive])
    advantages = returns[alive] - values[alive]
    reference = (-(distribution.log_prob(actions[alive]) * advantages).mean()
                 + F.mse_loss(values[alive], returns[alive]) - 0.01 * distribution.entropy().mean())
    assert torch.allclose(loss, reference, atol=1e-6)
    assert torch.allclose(logs["return_mean"], returns[alive].mean())


def test_the_lstm_reads_the_stems_residual_stream_flattened_as_in_diamond():
    torch.manual_seed(0)
    model = ActorCritic(4, 8, num_actions=3, channels=(8, 16), downsample=(0, 1), lstm_dim=6)
    inputs = torch.randn(2, 4, 8, 8)
    residual = model.stem[:-1](inputs).flatten(1)  # the conv stem, then DIAMOND's flatten, nothing between
    torch.testing.assert_close(model.stem(inputs), residual)
    assert (model.stem(inputs) < -0.3).any()  # no activation after the residual stream (a SiLU stays > -0.28)
    state = model.initial_state(2)
    hidden, _ = model.lstm(residual, state)
    logits, _, (new_hidden, _) = model(inputs, state)
    torch.testing.assert_close(new_hidden, hidden)
