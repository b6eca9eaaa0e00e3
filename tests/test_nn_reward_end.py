"""jedi_core.nn.reward_end: the reward/end model against the model written out from the formula (DIAMOND's:
the conv tower's features straight into the LSTM)."""

import pytest
import torch

from jedi_core.nn.reward_end import RewardEndModel
from jedi_core.presets import make_config


def _lstm_by_hand(lstm: torch.nn.LSTM, inputs: torch.Tensor) -> torch.Tensor:
    """The LSTM recurrence from its gate equations (i, f, g, o), one step at a time, zero initial state."""
    batch, steps, _ = inputs.shape
    hidden = inputs.new_zeros(batch, lstm.hidden_size)
    cell = inputs.new_zeros(batch, lstm.hidden_size)
    outputs = []
    for t in range(steps):
        gates = (inputs[:, t] @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + hidden @ lstm.weight_hh_l0.T
                 + lstm.bias_hh_l0)
        i, f, g, o = gates.chunk(4, dim=-1)
        cell = f.sigmoid() * cell + i.sigmoid() * g.tanh()
        hidden = o.sigmoid() * cell.tanh()
        outputs.append(hidden)
    return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("own_next_frames", [False, True])
def test_logits_follow_the_formula(own_next_frames):
    torch.manual_seed(0)
    model = RewardEndModel(frame_channels=3, frame_size=16, num_actions=4, cond_channels=8, depths=(1, 1),
                           channels=(8, 8), attention=(False, False), lstm_dim=12).eval()
    for parameter in model.parameters():  # zero-initialised output layers would hide the path
        torch.nn.init.normal_(parameter, std=0.2)
    frames, actions = torch.randn(2, 4, 3, 16, 16), torch.randint(0, 4, (2, 3))
    # Given next frames (imagination's, for next_input=sampled) replace x_t+1 in each pair; x_t stays.
    next_frames = torch.randn(2, 3, 3, 16, 16) if own_next_frames else frames[:, 1:]
    given = next_frames if own_next_frames else None
    reward_logits, end_logits, _ = model(frames, actions, next_frames=given)

    pairs = torch.cat([frames[:, :-1], next_frames], dim=2).flatten(0, 1)  # (x_t, x_t+1) on channels
    features = model.encoder(model.conv_in(pairs), model.action_embedding(actions.flatten()))
    hidden = _lstm_by_hand(model.lstm, features.reshape(2, 3, -1))
    logits = model.head(hidden)
    torch.testing.assert_close(reward_logits, logits[..., :3], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(end_logits, logits[..., 3:], atol=1e-5, rtol=1e-4)


def test_the_lstm_input_weights_have_diamonds_xavier_init_on_the_raw_features():
    model = RewardEndModel(3, 16, 4, 8, (1,), (8,), (False,), 12)
    fan_in = 8 * 16 * 16
    assert model.lstm.input_size == fan_in  # the flattened features, nothing between
    # Xavier-uniform input weights (DIAMOND's init): bound sqrt(6 / (in + out)).
    xavier_bound = (6 / (fan_in + 4 * 12)) ** 0.5
    assert model.lstm.weight_ih_l0.abs().max() <= xavier_bound
    assert model.lstm.weight_ih_l0.abs().max() > 0.9 * xavier_bound


def test_paper_presets_train_on_real_next_frames_and_the_atari_cpu_presets_on_imaginations():
    # DIAMOND's real x_t+1 at paper scale; the denoiser's samples where a real game is learnt on a CPU
    # (docs/fidelity.md, item 16), the same for JEDI and its pixel baseline so they differ only in the space.
    for preset in ("atari100k", "diamond", "colab", "smoke", "smoke_diamond", "toy"):
        assert make_config(preset).world_model.reward_end.next_input == "real"
    for preset in ("cpu", "cpu_diamond"):
        assert make_config(preset).world_model.reward_end.next_input == "sampled"
