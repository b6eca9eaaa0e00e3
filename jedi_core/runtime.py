"""How a run executes: device, seeding, atomic writes, logs that stay on the device, precision, compilation.

Everything here is plumbing that every layer may use and none of it knows the model:

* :func:`resolve_device` and :func:`seed_everything`;
* :func:`atomic_write_bytes`: a reader, or a crash, sees the old file or the whole new one, never a part;
* :class:`Stopwatch`: wall and CPU seconds side by side, for what a run costs;
* :func:`stop_signals_as_interrupts`: SIGTERM and SIGUSR2 (what ``timeout``, ``docker stop``, SLURM and
  Kubernetes send before they kill) take Ctrl-C's path, so a stopped run saves before it exits;
* device-side logs. Every ``.item()`` (and every ``if tensor:``) makes the host wait for the GPU to finish
  all the work queued so far. A world-model update that logged ten numbers that way would stall the GPU
  ten times, and the host could never queue the next batch while the GPU works on this one. So losses
  return their logs as detached 0-dim tensors (:data:`Logs`), read in one transfer: per update with
  :func:`to_floats` (what a notebook wants), or for many updates at once with :func:`mean_logs` (what the
  trainer does, every 200 updates);
* the fast path's two switches (config section ``performance``): :func:`autocast` for
  ``precision=bf16`` and :func:`compile_modules` for ``compile=MODE``. Neither changes the model, the
  schedule or any code path the CPU runs.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

#: A log entry: a detached 0-dim tensor while on the device, a float once read.
LogValue = Tensor | float
#: One update's logs, as the losses and training steps return them: detached 0-dim device tensors.
Logs = dict[str, Tensor]

PRECISIONS = ("fp32", "bf16")

# ----------------------------------------------------------------------------------------------
# Device and seeding


def set_backend_flags(tf32: bool, cudnn_benchmark: bool) -> None:
    """``performance.tf32`` and ``performance.cudnn_benchmark``: process-wide switches of the GPU's math
    libraries (no effect on a CPU). Set, not merely turned on, so one process can measure both ways."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cudnn_benchmark


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit accelerator that is absent is a clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={name!r} asked for a GPU, but this torch ({torch.__version__}) "
                               "sees none; use device=auto or device=cpu, or install a CUDA build of torch")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device={name!r}: only {torch.cuda.device_count()} GPU(s) are visible")
    mps_available = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device.type == "mps" and not mps_available:
        raise RuntimeError(f"device={name!r}: Apple MPS is not available here; use device=auto or device=cpu")
    return device


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch (all devices); return a NumPy generator for the caller's own draws."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------------------------
# Files


def write_durably(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to disk; a failure (a full disk, a kill) removes the part
    written."""
    path = Path(path)
    try:
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it over ``path``: the
    old file stays whole until the new one is."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write_durably(tmp, data)
    os.replace(tmp, path)


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


# ----------------------------------------------------------------------------------------------
# Clocks


class Stopwatch:
    """Wall seconds and this process's CPU seconds since it was made. The CPU clock is what a run costs:
    neither a pause (SIGSTOP) nor another process on the cores inflates it."""

    def __init__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def seconds(self) -> float:
        return time.perf_counter() - self._wall

    def cpu_seconds(self) -> float:
        return time.process_time() - self._cpu


# ----------------------------------------------------------------------------------------------
# Logs that stay on the device


def to_floats(logs: Mapping[str, LogValue]) -> dict[str, float]:
    """Read every log value to the host in one transfer."""
    if not logs:
        return {}
    values = [_scalar(value) for value in logs.values()]
    device = next((value.device for value in values if value.device.type != "cpu"), torch.device("cpu"))
    return dict(zip(logs, torch.stack([value.to(device) for value in values]).tolist(), strict=True))


def mean_logs(entries: Iterable[Mapping[str, LogValue]]) -> dict[str, float]:
    """The mean of each key over many updates' logs, read to the host in one transfer."""
    collected: dict[str, list[LogValue]] = {}
    for entry in entries:
        for key, value in entry.items():
            collected.setdefault(key, []).append(value)
    means = {key: torch.stack([_scalar(v) for v in values]).mean() for key, values in collected.items()}
    return to_floats(means)


def _scalar(value: LogValue) -> Tensor:
    return torch.as_tensor(value).detach().float().reshape(())


def non_finite(logs: Mapping[str, float]) -> list[str]:
    """The keys whose value is NaN or infinite (a diverged update)."""
    return [key for key, value in logs.items() if not math.isfinite(value)]


# ----------------------------------------------------------------------------------------------
# Precision and compilation


def autocast(device: torch.device | str, precision: str, cache_enabled: bool = True) -> torch.autocast:
    """The forward passes' precision context: bf16 autocast for ``precision="bf16"``, a no-op for ``"fp32"``.

    Weights, optimiser state and losses stay fp32; only matmuls and convolutions run in bf16, and autocast
    keeps norms, softmaxes and reductions in fp32. Every network returns fp32 outputs whatever ran inside
    it (:func:`jedi_core.nn.ops.fp32_outputs`), so the code around the networks never sees bf16.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not allowed; choose one of: {', '.join(PRECISIONS)}")
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16",
                          cache_enabled=cache_enabled)


def use_channels_last(module: nn.Module, setting: str, device: torch.device | str) -> nn.Module:
    """``performance.channels_last``: ``module``'s 4-d weights in channels-last memory format (in place), so
    its convolutions run and return NHWC; ``"auto"`` does so on a CPU only. The numbers are the same, to
    float rounding; checkpoints load either way."""
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"channels_last {setting!r} is not allowed; choose one of: auto, on, off")
    if setting == "on" or (setting == "auto" and torch.device(device).type == "cpu"):
        module.to(memory_format=torch.channels_last)
    return module


#: Why ``compile=reduce-overhead`` is not this project's graph path.
REDUCE_OVERHEAD_WARNING = (
    "performance.compile=reduce-overhead: inductor's CUDA graph trees may overwrite the actor-critic's LSTM "
    "state between calls ('accessing tensor output of CUDAGraphs that has been overwritten'). "
    "performance.cuda_graphs=true replays whole updates from CUDA graphs of the project's own; "
    "compile=default compiles without graphs.")


def compile_modules(modules: Mapping[str, nn.Module], mode: str, backend: str = "inductor") -> list[str]:
    """``torch.compile`` each module in place with ``mode``; returns their names (none for ``mode="off"``).

    ``Module.compile`` keeps the parameter names, so checkpoints are the same with and without it.
    ``backend="aot_eager"`` traces and checks the graphs without generating kernels (what the CPU tests use).
    """
    if mode == "off":
        return []
    if mode == "reduce-overhead" and backend == "inductor":
        warnings.warn(REDUCE_OVERHEAD_WARNING, stacklevel=2)
    for module in modules.values():
        module.compile(mode=None if mode == "default" or backend != "inductor" else mode, backend=backend)
    return list(modules)


# ----------------------------------------------------------------------------------------------
# Stop signals

#: The signals that ask a run to stop: SIGTERM (``timeout``, ``docker stop``, schedulers, VM shutdown) and
#: SIGUSR2 (what SLURM is usually told to send ahead of its time limit). Ctrl-C (SIGINT) already stops so.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR2") if hasattr(signal, name))


class StopRequested(KeyboardInterrupt):
    """A stop signal, raised where the program stands, as Ctrl-C raises ``KeyboardInterrupt``.

    A subclass of it, so that everything that saves on Ctrl-C saves on a stop signal too. ``exit_code`` is
    the shell's 128 + signal number (143 for SIGTERM), which tells a scheduler that the process was stopped.
    """

    def __init__(self, signum: int):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(signal.Signals(signum).name)


@contextlib.contextmanager
def stop_signals_as_interrupts() -> Iterator[None]:
    """Within the block, a stop signal raises :class:`StopRequested`; the previous handlers come back after.

    Once one has arrived, later ones are ignored, so a second SIGTERM cannot cut the save short (a
    scheduler's final SIGKILL still can; the checkpoint is written atomically). Outside the main thread,
    where Python cannot install handlers, the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_stop(signum: int, frame: object) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise StopRequested(signum)

    previous = {sig: signal.signal(sig, raise_stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
