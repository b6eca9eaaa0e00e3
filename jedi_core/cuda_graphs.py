"""One imagined world-model step as one CUDA graph (``performance.cuda_graphs``).

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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

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
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), self.context():
            for _ in range(WARMUP_RUNS):
                self.fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
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
