"""Optimisation shared by the world model and the actor-critic (DIAMOND's recipe and its ``train_component``).

AdamW with weight decay on the weights of Linear, Conv and LSTM layers only (biases, norms and embeddings
are not decayed, as in minGPT and DIAMOND), one parameter group per component so each can have its own
learning rate, a linear warm-up, and :class:`Update`: the one update every trained component goes through
(its loss, backward, per-group gradient clipping, each optimiser's step and schedule).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from jedi_core.runtime import Logs, to_floats

#: ``{log name: (parameters, max norm)}``: each group's gradient norm is clipped and logged under its name.
ClipGroups = Mapping[str, tuple[Iterable[nn.Parameter], float]]
#: An optimiser and its learning-rate schedule (``None``: a constant rate).
OptimizerAndSchedule = tuple[torch.optim.Optimizer, "torch.optim.lr_scheduler.LRScheduler | None"]

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


@dataclass
class Update:
    """One update of the modules a loss trains (DIAMOND's ``train_component``).

    ``loss_fn(*inputs) -> (loss, logs)`` runs inside ``context()`` (e.g. bf16 autocast, chosen by the
    caller), then :func:`optimizer_step` with ``optimizers`` and ``clip_groups``. Calling it returns the logs
    as 0-dim device tensors (``runtime.to_floats`` reads them).
    """

    loss_fn: Callable[..., tuple[Tensor, Logs]]
    optimizers: Sequence[OptimizerAndSchedule]
    clip_groups: ClipGroups
    context: Callable[[], AbstractContextManager] = contextlib.nullcontext

    def __call__(self, *inputs: Tensor, check_finite: bool = True) -> Logs:
        with self.context():
            loss, logs = self.loss_fn(*inputs)
        return optimizer_step(loss, logs, self.optimizers, self.clip_groups, check_finite)


def optimizer_step(loss: Tensor, logs: Logs, optimizers: Sequence[OptimizerAndSchedule],
                   clip_groups: ClipGroups, check_finite: bool = True) -> Logs:
    """Backward, clip each group's gradient norm, step each optimiser and advance its schedule.

    Returns ``logs`` with each group's norm before clipping added (0-dim device tensors). With
    ``check_finite`` a non-finite loss raises before any weight changes; it reads the loss on the host, so
    the trainer turns it off and checks the logs of many updates at once instead (``runtime.mean_logs``).
    """
    if check_finite:
        raise_if_not_finite(loss, logs)
    logs = backward_and_clip(loss, logs, optimizers, clip_groups)
    apply_gradients(optimizers)
    return logs


def backward_and_clip(loss: Tensor, logs: Logs, optimizers: Sequence[OptimizerAndSchedule],
                      clip_groups: ClipGroups) -> Logs:
    """The first half of :func:`optimizer_step`: fresh gradients of ``loss``, each group's norm clipped and
    logged. Device work only, no host decision, so a CUDA graph can record it (``jedi_core.cuda_graphs``)."""
    for optimizer, _ in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for name, (parameters, max_norm) in clip_groups.items():
        logs[name] = nn.utils.clip_grad_norm_(parameters, max_norm)
    return logs


def apply_gradients(optimizers: Sequence[OptimizerAndSchedule]) -> None:
    """The second half of :func:`optimizer_step`: the weights move, each schedule advances (never inside a
    CUDA graph, which would replay the learning rate it was captured with)."""
    for optimizer, scheduler in optimizers:
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def raise_if_not_finite(loss: Tensor, logs: Logs) -> None:
    """Raise ``FloatingPointError`` naming the loss and its logs if ``loss`` is NaN or infinite (reads it on
    the host, so it waits for the device)."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {loss.item()} (logs: {to_floats(logs)})")
