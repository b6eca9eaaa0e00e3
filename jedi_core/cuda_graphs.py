"""Imagined world-model steps and whole updates replayed from CUDA graphs (``performance.cuda_graphs``).

Eager, the world model's imagined step is about 430 small kernels (``bench --ops``), each launched by the
host for ~10 us: at batch 32 the GPU idles most of the step. A CUDA graph records
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

A capture that fails (an op CUDA graphs do not allow, say) costs speed, not the run: the step or update warns
with the traceback, keeps it in ``capture_error``, and runs eagerly from then on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import traceback
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from jedi_core.imagination import WorldModelStep
from jedi_core.optim import Update, apply_gradients, backward_and_clip, raise_if_not_finite
from jedi_core.runtime import Logs
from jedi_core.world_model import ImaginationState, WorldModel

#: Warm-up runs before capture (on a side stream, as CUDA graphs require): lazy initialisations (cuDNN's
#: algorithm choice, the allocator's first blocks) must not happen during capture.
WARMUP_RUNS = 3


class _Captured:
    """What :class:`StaticStep` and :class:`StaticUpdate` share: which calls a graph captures, the graph once
    captured, and the traceback of a capture that failed."""

    graph: torch.cuda.CUDAGraph | None = None
    capture_error: str | None = None

    @staticmethod
    def graphed(example: Tensor) -> bool:
        """Whether calls with inputs like ``example`` are captured: on a GPU."""
        return example.is_cuda


class StaticStep(_Captured):
    """``fn`` (fixed-shape tensors in, a list of tensors out) captured in a CUDA graph on a GPU.

    Call it with tensors shaped like ``example_inputs``; it returns fresh copies of ``fn``'s outputs.
    """

    def __init__(self, fn: Callable[..., Sequence[Tensor]], example_inputs: Sequence[Tensor],
                 context: Callable[[], object] = torch.no_grad):
        self.fn = fn
        self.context = context
        self.inputs = [tensor.clone() for tensor in example_inputs]
        self.outputs: Sequence[Tensor] = ()
        if self.graphed(self.inputs[0]):
            try:
                self._capture()
            except Exception:  # noqa: BLE001 - any failure: run eagerly, and say why
                self.capture_error = capture_failed("an imagined step")

    def _capture(self) -> None:
        for _ in range(WARMUP_RUNS):
            on_side_stream(self.fn, self.inputs, self.context)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), self.context():
            self.outputs = self.fn(*self.inputs)
        self.graph = graph  # only a finished capture is ever replayed

    def __call__(self, *inputs: Tensor) -> list[Tensor]:
        for buffer, value in zip(self.inputs, inputs, strict=True):
            buffer.copy_(value)
        if self.graph is None:
            with self.context():
                self.outputs = self.fn(*self.inputs)
        else:
            self.graph.replay()
        return [output.clone() for output in self.outputs]


def capture_failed(what: str) -> str:
    """Warn that capturing ``what`` failed, with the traceback being handled, and return that traceback."""
    error = traceback.format_exc()
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # a capture cut short must not leave work queued behind it
    warnings.warn(f"CUDA-graph capture of {what} failed; it runs eagerly from now on.\n{error}",
                  RuntimeWarning, stacklevel=2)
    return error


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


class StaticUpdate(_Captured):
    """An :class:`~jedi_core.optim.Update` whose loss, gradients and clipping a CUDA graph replays on a GPU.

    Called like the update (``inputs``, ``check_finite``), it returns the logs. The first
    :data:`WARMUP_RUNS` calls run eagerly on a side stream, and they are real updates, like every later one:
    the next call captures the graph and replays it. The optimisers step eagerly after each replay, so the
    learning rate follows its schedule. The gradients live in the graph's memory: after each replay every
    parameter's ``.grad`` is pointed back at them, because another update that trains the same weights (the
    encoder, trained by both world-model losses) has its own. On a CPU there is no graph: every call copies
    its inputs into the same buffers and runs eagerly.
    """

    def __init__(self, update: Update):
        def fn(*tensors: Tensor) -> LossAndLogs:
            loss, logs = update.loss_fn(*self._unflatten(tensors))
            return loss.detach(), backward_and_clip(loss, logs, update.optimizers, update.clip_groups)

        self.fn = fn  # what the graph records
        loss_fn = update.loss_fn
        self.name = getattr(getattr(loss_fn, "func", loss_fn), "__name__", "update")  # for messages
        self.optimizers = update.optimizers
        self.parameters = [parameter for group, _ in update.clip_groups.values() for parameter in group]
        self.context = update.context
        self.calls = 0
        self.inputs: list[Tensor] = []
        self.outputs: LossAndLogs | None = None
        self.grads: list[Tensor | None] = []
        self.structure: list[type | None] = []  # per input: None for a tensor, else its type (a TorchBatch)

    def __call__(self, *inputs: object, check_finite: bool = True) -> Logs:
        """One whole update: the captured part, then the optimisers' steps and schedules, eagerly. With
        ``check_finite`` a non-finite loss raises before any weight changes (``optim.optimizer_step``)."""
        loss, logs = self.gradients(*inputs)
        if check_finite:
            raise_if_not_finite(loss, logs)
        apply_gradients(self.optimizers)
        return logs

    def gradients(self, *inputs: object) -> LossAndLogs:
        """Fresh gradients for ``inputs`` (tensors, or batches with a ``tensors()`` method, taken apart into
        the graph's input buffers); returns copies of the loss and logs."""
        self.structure = [None if isinstance(item, Tensor) else type(item) for item in inputs]
        inputs = [tensor for item in inputs
                  for tensor in ([item] if isinstance(item, Tensor) else item.tensors())]
        self.calls += 1
        graphed = self.graphed(inputs[0]) and self.capture_error is None
        if graphed and self.calls <= WARMUP_RUNS:
            return self._warm_up(inputs)
        if not self.inputs:
            self.inputs = [tensor.clone() for tensor in inputs]
        for buffer, value in zip(self.inputs, inputs, strict=True):
            buffer.copy_(value)
        if graphed and self.graph is None:
            graphed = self._try_capture()
        if not graphed:
            with self.context():
                self.outputs = self.fn(*self.inputs)
        else:
            self.graph.replay()
            for parameter, grad in zip(self.parameters, self.grads, strict=True):
                parameter.grad = grad
        loss, logs = self.outputs
        return loss.clone(), {name: value.clone() for name, value in logs.items()}

    def _unflatten(self, tensors: Sequence[Tensor]) -> list[object]:
        items, position = [], 0
        for kind in self.structure:
            if kind is None:
                items.append(tensors[position])
                position += 1
            else:
                size = len(dataclasses.fields(kind))
                items.append(kind(*tensors[position: position + size]))
                position += size
        return items

    def _warm_up(self, inputs: Sequence[Tensor]) -> LossAndLogs:
        return on_side_stream(self.fn, inputs, self.context)

    def _try_capture(self) -> bool:
        """Capture the graph; if that fails, warn with the traceback and run eagerly from now on."""
        try:
            self._capture()
            return True
        except Exception:  # noqa: BLE001 - any failure: this update runs eagerly, and says why
            self.capture_error = capture_failed(f"the update of {self.name}")
            self.graph, self.outputs, self.grads = None, None, []
            for parameter in self.parameters:
                parameter.grad = None  # none may live in the abandoned graph's memory
            return False

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), self.context():
            self.outputs = self.fn(*self.inputs)
        self.grads = [parameter.grad for parameter in self.parameters]
        self.graph = graph  # only a finished capture is ever replayed


# ----------------------------------------------------------------------------------------------
# The world model's imagined step, for rollouts outside a graphed update (``imagination.imagine``)


def graphed_imagine_step(world_model: WorldModel, state: ImaginationState,
                         context: Callable[[], object] = contextlib.nullcontext) -> WorldModelStep:
    """``world_model.imagine_step`` from states shaped like ``state`` as a :class:`StaticStep` (the flat state
    and the action in, the next latent, reward, end flag and flat new state out), called as the step is."""
    has_memory = state.reward_end_state is not None

    def unflatten(tensors: Sequence[Tensor]) -> ImaginationState:
        latents, actions, *memory = tensors
        return ImaginationState(latents, actions, (memory[0], memory[1]) if has_memory else None)

    def flatten(state: ImaginationState) -> list[Tensor]:
        return [state.latents, state.actions, *(state.reward_end_state or ())]

    def flat_step(*tensors: Tensor) -> list[Tensor]:
        *flat_state, action = tensors
        next_latent, reward, end, new_state = world_model.imagine_step(unflatten(flat_state), action)
        return [next_latent, reward, end, *flatten(new_state)]

    def no_grad_context() -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(torch.no_grad())
        stack.enter_context(context())
        return stack

    first_action = state.actions.new_zeros(state.actions.shape[0])
    static = StaticStep(flat_step, [*flatten(state), first_action], no_grad_context)

    def step(state: ImaginationState, action: Tensor, generator: None = None
             ) -> tuple[Tensor, Tensor, Tensor, ImaginationState]:
        if generator is not None:
            raise ValueError("a graphed step draws from the default generator; pass none")
        next_latent, reward, end, *new_state = static(*flatten(state), action)
        return next_latent, reward, end, unflatten(new_state)
    step.static = static  # type: ignore[attr-defined]  # its capture_error, for the benchmarks
    return step
