"""Optimiser construction shared by the world model and the actor-critic (DIAMOND's recipe).

AdamW with weight decay on the weights of Linear, Conv and LSTM layers only (biases, norms and embeddings
are not decayed, as in minGPT and DIAMOND), one parameter group per component so each can have its own
learning rate, and a linear warm-up.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

_DECAYED = (nn.Linear, nn.Conv2d, nn.LSTM, nn.LSTMCell)


def decay_split(module: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(parameters to decay, parameters not to decay) of ``module``."""
    decay, no_decay = [], []
    for submodule in module.modules():
        for name, parameter in submodule.named_parameters(recurse=False):
            if not parameter.requires_grad:
                continue
            is_weight = name.startswith("weight")
            (decay if isinstance(submodule, _DECAYED) and is_weight else no_decay).append(parameter)
    return decay, no_decay


def make_adamw(components: Mapping[str, tuple[nn.Module, float]], weight_decay: float, eps: float
               ) -> torch.optim.AdamW:
    """One AdamW over ``{name: (module, learning_rate)}``, two groups (decay / no decay) per component."""
    groups = []
    for name, (module, lr) in components.items():
        decay, no_decay = decay_split(module)
        groups += [{"params": decay, "lr": lr, "weight_decay": weight_decay, "name": f"{name}"},
                   {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{name}_no_decay"}]
    return torch.optim.AdamW([g for g in groups if g["params"]], eps=eps)


def linear_warmup(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate rises linearly from 1/steps to 1x over ``steps`` updates, then stays."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, steps)))
