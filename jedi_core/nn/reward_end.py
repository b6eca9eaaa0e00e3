"""Reward/termination model (DIAMOND's ``RewEndModel``).

Each transition (x_t, a_t, x_t+1) is read by a conv encoder: the two frames (or latents) are stacked on
channels and the action enters through AdaGroupNorm. An LSTM then carries memory along the sequence. The
heads give 3 reward classes (the sign of the reward: -1, 0, +1) and 2 end classes. In imagination both are
*sampled*, not argmax'ed, so rare rewards and deaths still happen.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jedi_core.nn.blocks import Conv3x3, LSTMState, ResEncoder, init_lstm
from jedi_core.nn.ops import fp32_outputs, masked_mean, sample_categorical


class RewardEndModel(nn.Module):
    """Predicts sign(reward) (3 classes) and the end flag (2 classes) of each transition, with memory.

    A conv tower with action-conditioned AdaGroupNorm reads each stacked pair (x_t, x_t+1); an LSTM carries
    what it saw along the segment (or along an imagined rollout), reading the tower's features as they are
    (DIAMOND). Outputs are fp32 under any autocast.
    """

    def __init__(self, frame_channels: int, frame_size: int, num_actions: int, cond_channels: int,
                 depths: Sequence[int], channels: Sequence[int], attention: Sequence[bool], lstm_dim: int):
        super().__init__()
        self.action_embedding = nn.Embedding(num_actions, cond_channels)
        self.conv_in = Conv3x3(2 * frame_channels, channels[0])
        self.encoder = ResEncoder(cond_channels, depths, channels, attention)
        feature_size = frame_size // 2 ** (len(channels) - 1)
        features = channels[-1] * feature_size**2
        self.lstm = nn.LSTM(features, lstm_dim, batch_first=True)
        init_lstm(self.lstm)
        self.head = nn.Sequential(nn.Linear(lstm_dim, lstm_dim), nn.SiLU(),
                                  nn.Linear(lstm_dim, 3 + 2, bias=False))
        fp32_outputs(self)

    def forward(self, frames: Tensor, actions: Tensor, state: LSTMState | None = None,
                next_frames: Tensor | None = None) -> tuple[Tensor, Tensor, LSTMState]:
        """frames (B, T+1, C, H, W), actions (B, T) -> reward logits (B, T, 3), end logits (B, T, 2),
        and the new LSTM state. Transition t reads (frames[t], next_frames[t]); ``next_frames`` (B, T, C, H,
        W) defaults to frames[1:]."""
        hidden, state = self.lstm(self.features(frames, actions, next_frames), state)
        logits = self.head(hidden)
        return logits[..., :3], logits[..., 3:], state

    def features(self, frames: Tensor, actions: Tensor, next_frames: Tensor | None = None) -> Tensor:
        """The conv tower's flattened features of each transition, (B, T, features): the LSTM's input."""
        batch, steps = actions.shape
        if next_frames is None:
            next_frames = frames[:, 1:]
        pairs = torch.cat([frames[:, :-1], next_frames], dim=2).flatten(0, 1)
        features = self.encoder(self.conv_in(pairs), self.action_embedding(actions.flatten()))
        return features.reshape(batch, steps, -1)

    def loss(self, frames: Tensor, actions: Tensor, rewards: Tensor, ends: Tensor, mask: Tensor,
             next_frames: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy on sign(reward) and on the end flag, averaged over the transitions where ``mask`` is
        True. Masked means, not boolean indexing, so the host never waits (``jedi_core.runtime``)."""
        reward_logits, end_logits, _ = self(frames, actions, next_frames=next_frames)
        reward_targets = rewards.sign().long() + 1  # -1, 0, +1 -> classes 0, 1, 2
        reward_loss = masked_mean(F.cross_entropy(reward_logits.transpose(1, 2), reward_targets,
                                                  reduction="none"), mask)
        end_loss = masked_mean(F.cross_entropy(end_logits.transpose(1, 2), ends.long(), reduction="none"),
                               mask)
        with torch.no_grad():
            reward_accuracy = masked_mean((reward_logits.argmax(-1) == reward_targets).float(), mask)
        return reward_loss + end_loss, {"reward_loss": reward_loss.detach(), "end_loss": end_loss.detach(),
                                        "reward_accuracy": reward_accuracy}

    @torch.no_grad()
    def sample(self, frames: Tensor, actions: Tensor, state: LSTMState | None = None,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, LSTMState]:
        """The last transition's sampled reward in {-1, 0, 1} (float), end flag (bool), and the new state."""
        reward_logits, end_logits, state = self(frames, actions, state)
        reward = sample_categorical(reward_logits[:, -1].softmax(-1), generator).float() - 1
        end = sample_categorical(end_logits[:, -1].softmax(-1), generator).bool()
        return reward, end, state
