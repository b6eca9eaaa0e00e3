"""Optimisation shared by the world model and the actor-critic (DIAMOND's recipe and its ``train_component``).

AdamW with weight decay on the weights of Linear, Conv and LSTM layers only (biases, norms and embeddings
are not decayed, as in minGPT and DIAMOND), one parameter group per component so each can have its own
learning rate, a linear warm-up, and :func:`optimizer_step`: the one update every trained component
goes through (backward, per-group gradient clipping, step, schedule).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from jedi_core.runtime import Logs, to_floats

#: ``{log name: (parameters, max norm)}``: each group's gradient norm is clipped and logged under its name.
ClipGroups = Mapping[str, tuple[Iterable[nn.Parameter], float]]

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
    """One AdamW over ``{name: (module, learning_rate)}``, two groups (decay / no decay) per component.

    Fused: one kernel updates every parameter of a group (the per-parameter loop launches about ten per
    parameter: thousands per update). The same AdamW, to float rounding.
    """
    groups = []
    for name, (module, lr) in components.items():
        decay, no_decay = decay_split(module)
        groups += [{"params": decay, "lr": lr, "weight_decay": weight_decay, "name": f"{name}"},
                   {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{name}_no_decay"}]
    return torch.optim.AdamW([g for g in groups if g["params"]], eps=eps, fused=True)


def linear_warmup(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate rises linearly from 0 to 1x over ``steps`` updates, then stays (DIAMOND's schedule).

    The first update runs at rate 0: it only fills AdamW's moment estimates, as in DIAMOND.
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 if step >= steps else step / steps)


def optimizer_step(loss: Tensor, logs: Logs, optimizer: torch.optim.Optimizer,
                   scheduler: torch.optim.lr_scheduler.LRScheduler | None, clip_groups: ClipGroups,
                   check_finite: bool = True) -> Logs:
    """One update of one component: backward, clip each group's gradient norm, step, advance the schedule.

    Returns ``logs`` with each group's norm before clipping added (0-dim device tensors). With
    ``check_finite`` a non-finite loss raises before any weight changes; it reads the loss on the host, so
    the trainer turns it off and checks the logs of many updates at once instead (``runtime.mean_logs``).
    """
    if check_finite:
        raise_if_not_finite(loss, logs)
    logs = backward_and_clip(loss, logs, optimizer, clip_groups)
    apply_gradients(optimizer, scheduler)
    return logs


def backward_and_clip(loss: Tensor, logs: Logs, optimizer: torch.optim.Optimizer, clip_groups: ClipGroups
                      ) -> Logs:
    """The first half of :func:`optimizer_step`: fresh gradients of ``loss``, each group's norm clipped and
    logged. All device work, no host decision: ``performance.cuda_graphs`` records it in a CUDA graph."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for name, (parameters, max_norm) in clip_groups.items():
        logs[name] = nn.utils.clip_grad_norm_(parameters, max_norm)
    return logs


def apply_gradients(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler | None
                    ) -> None:
    """The second half of :func:`optimizer_step`: the weights move, the schedule advances.

    Outside any CUDA graph, so the learning rate is the scheduler's at every update (a graph would replay
    the rate it was captured with) and the optimiser's state is its own, in checkpoints as ever.
    """
    optimizer.step()
    if scheduler is not None:
        scheduler.step()


def raise_if_not_finite(loss: Tensor, logs: Logs) -> None:
    """Raise ``FloatingPointError`` naming the loss and its logs if ``loss`` is NaN or infinite (reads it on
    the host, so it waits for the device)."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {loss.item()} (logs: {to_floats(logs)})")
