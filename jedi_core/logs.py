"""Training logs that stay on the device until someone reads them.

Every ``.item()`` (and every ``if tensor:``) makes the host wait for the GPU to finish all the work queued so
far. A world-model update that logged ten numbers that way would stall the GPU ten times, and the host could
never queue the next batch while the GPU works on this one. So losses return their logs as detached 0-dim
tensors, and they are read in one transfer: per update with :func:`to_floats` (what a notebook wants), or
for many updates at once with :func:`mean_logs` (what the trainer does, every 200 updates).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

#: A log entry: a detached 0-dim tensor while on the device, a float once read.
LogValue = Tensor | float


def to_floats(logs: Mapping[str, LogValue]) -> dict[str, float]:
    """Read every log value to the host in one transfer."""
    tensors = {key: value for key, value in logs.items() if isinstance(value, Tensor)}
    read = dict(zip(tensors, _read([value.detach().float().reshape(()) for value in tensors.values()]), strict=True))
    return {key: read[key] if key in read else float(value) for key, value in logs.items()}


def mean_logs(entries: Iterable[Mapping[str, LogValue]]) -> dict[str, float]:
    """The mean of each key over many updates' logs, read to the host in one transfer."""
    collected: dict[str, list[LogValue]] = {}
    for entry in entries:
        for key, value in entry.items():
            collected.setdefault(key, []).append(value)
    means: dict[str, LogValue] = {}
    for key, values in collected.items():
        device = next((v.device for v in values if isinstance(v, Tensor)), None)
        if device is None:
            means[key] = sum(values) / len(values)
        else:
            means[key] = torch.stack([torch.as_tensor(v, device=device).detach().float().reshape(())
                                      for v in values]).mean()
    return to_floats(means)


def non_finite(logs: Mapping[str, float]) -> list[str]:
    """The keys whose value is NaN or infinite (a diverged update)."""
    return [key for key, value in logs.items() if not math.isfinite(value)]


def _read(values: list[Tensor]) -> list[float]:
    if not values:
        return []
    devices = {value.device for value in values}
    if len(devices) > 1:  # rare (a log computed on the host beside device ones): one transfer per device
        return [value.item() for value in values]
    return torch.stack(values).tolist()
