"""Imagined world-model steps and whole updates replayed from CUDA graphs (``performance.cuda_graphs``).

Eager, the world model's imagined step is about 430 small kernels (``bench --ops``), each launched by the
host for ~10 us: at batch 32 the GPU idles most of the step (``benchmarks/RESULTS.md``). A CUDA graph records
the kernels once and replays them with a single launch. The price: a graph reads its inputs from, and writes
its outputs to, the same memory every replay. So :class:`StaticStep` copies each call's inputs into its
input buffers, replays, and returns *copies* of the outputs (a rollout keeps every step's latent, and the
next replay overwrites the buffers). That is ~12 launches per step instead of ~430.

The graph records the draws of the default CUDA generator (PyTorch advances its offset at each replay), so
each replay draws fresh noise; with a ``torch.Generator`` of its own the step runs eagerly. Weights are read
where they live, so optimiser steps (in place) are seen by the next replay. On a CPU there is no graph: the
same buffers are run eagerly, which is how the CPU tests check the buffer handling against the eager step.

:class:`StaticUpdate` does the same for a whole update's loss, backward pass and gradient clipping: a
world-model update (about 840 kernels eager) or an actor-critic update (about 8,300: its whole imagined
rollout). The optimiser's step stays outside the graph (one fused kernel per parameter group), so the learning
rate follows the schedule and the optimiser's state and checkpoints are those of the eager path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from jedi_core.optim import ClipGroups, apply_gradients, backward_and_clip, raise_if_not_finite
from jedi_core.runtime import Logs

#: Warm-up runs before capture (on a side stream, as CUDA graphs require): lazy initialisations (cuDNN's
#: algorithm choice, the allocator's first blocks) must not happen during capture.
WARMUP_RUNS = 3


class StaticStep:
    """``fn`` (fixed-shape tensors in, a list of tensors out) captured in a CUDA graph on a GPU.

    Call it with tensors shaped like ``example_inputs``; it returns fresh copies of ``fn``'s outputs.
    """

    def __init__(self, fn: Callable[..., Sequence[Tensor]], example_inputs: Sequence[Tensor],
                 context: Callable[[], object] = torch.no_grad):
        self.fn = fn
        self.context = context
        self.inputs = [tensor.clone() for tensor in example_inputs]
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: Sequence[Tensor] = ()
        if self.inputs[0].is_cuda:
            self._capture()

    def _capture(self) -> None:
        for _ in range(WARMUP_RUNS):
            on_side_stream(self.fn, self.inputs, self.context)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), self.context():
            self.outputs = self.fn(*self.inputs)

    def __call__(self, *inputs: Tensor) -> list[Tensor]:
        for buffer, value in zip(self.inputs, inputs, strict=True):
            buffer.copy_(value)
        if self.graph is None:
            with self.context():
                self.outputs = self.fn(*self.inputs)
        else:
            self.graph.replay()
        return [output.clone() for output in self.outputs]


def on_side_stream(fn: Callable[..., object], inputs: Sequence[Tensor], context: Callable[[], object]
                   ) -> object:
    """``fn(*inputs)`` on a side stream, as CUDA graphs require of the runs before a capture."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), context():
        outputs = fn(*inputs)
    torch.cuda.current_stream().wait_stream(side)
    return outputs


#: What an update's captured part returns: its loss (detached) and its logs, all 0-dim device tensors.
LossAndLogs = tuple[Tensor, Logs]


class StaticUpdate:
    """The loss, gradients and clipping of one update captured in a CUDA graph on a GPU.

    ``loss_fn(*inputs) -> (loss, logs)``; each call computes them, then ``optim.backward_and_clip`` with
    ``optimizer`` and ``clip_groups``, and :meth:`step` then runs the optimiser. The first
    :data:`WARMUP_RUNS` calls run eagerly on a side stream, and they are real updates, like every later one:
    the next call captures the graph and replays it. The gradients then live in the graph's memory: after
    each replay every parameter's ``.grad`` is pointed back at them, because another update that trains the
    same weights (the encoder, in both parts of a world-model update) has its own. On a CPU there is no
    graph: every call copies its inputs into the same buffers and runs eagerly.
    """

    def __init__(self, loss_fn: Callable[..., LossAndLogs], optimizer: torch.optim.Optimizer,
                 clip_groups: ClipGroups, context: Callable[[], object] = contextlib.nullcontext):
        def fn(*inputs: Tensor) -> LossAndLogs:
            loss, logs = loss_fn(*inputs)
            return loss.detach(), backward_and_clip(loss, logs, optimizer, clip_groups)

        self.fn = fn  # what the graph records
        self.parameters = [parameter for group, _ in clip_groups.values() for parameter in group]
        self.context = context
        self.calls = 0
        self.inputs: list[Tensor] = []
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: LossAndLogs | None = None
        self.grads: list[Tensor | None] = []

    def __call__(self, *inputs: Tensor) -> LossAndLogs:
        """Fresh gradients for ``inputs``; returns copies of the loss and logs."""
        self.calls += 1
        graphed = self.graphed(inputs[0])
        if graphed and self.calls <= WARMUP_RUNS:
            return self._warm_up(inputs)
        if not self.inputs:
            self.inputs = [tensor.clone() for tensor in inputs]
        for buffer, value in zip(self.inputs, inputs, strict=True):
            buffer.copy_(value)
        if not graphed:
            with self.context():
                self.outputs = self.fn(*self.inputs)
        else:
            if self.graph is None:
                self._capture()
            self.graph.replay()
            for parameter, grad in zip(self.parameters, self.grads, strict=True):
                parameter.grad = grad
        loss, logs = self.outputs
        return loss.clone(), {name: value.clone() for name, value in logs.items()}

    @staticmethod
    def graphed(example: Tensor) -> bool:
        """Whether calls with inputs like ``example`` are captured: on a GPU."""
        return example.is_cuda

    def _warm_up(self, inputs: Sequence[Tensor]) -> LossAndLogs:
        return on_side_stream(self.fn, inputs, self.context)

    def _capture(self) -> None:
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), self.context():
            self.outputs = self.fn(*self.inputs)
        self.grads = [parameter.grad for parameter in self.parameters]

    def step(self, inputs: Sequence[Tensor], optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler | None, check_finite: bool = True) -> Logs:
        """One whole update: the captured part, then the optimiser's step and the schedule, eagerly. With
        ``check_finite`` a non-finite loss raises before any weight changes (``optim.optimizer_step``)."""
        loss, logs = self(*inputs)
        if check_finite:
            raise_if_not_finite(loss, logs)
        apply_gradients(optimizer, scheduler)
        return logs


# ----------------------------------------------------------------------------------------------
# The world model's imagined step (``WorldModel.step_function`` keeps it)


def static_imagine_step(world_model: nn.Module, state: object) -> StaticStep:
    """``world_model.imagine_step`` from ``state`` (an ``ImaginationState``) as a :class:`StaticStep`: the
    flat state and the action in, the next latent, reward, end flag and flat new state out."""
    state_type = type(state)

    def flat_step(*tensors: Tensor) -> list[Tensor]:
        *flat_state, action = tensors
        current = state_type.from_flat(flat_state)
        next_latent, reward, end, new_state = world_model.imagine_step(current, action)
        return [next_latent, reward, end, *new_state.flat()]

    def context() -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(torch.no_grad())
        stack.enter_context(world_model.autocast(cache_enabled=False))
        return stack

    first_action = state.actions.new_zeros(state.actions.shape[0])
    return StaticStep(flat_step, [*state.flat(), first_action], context)
