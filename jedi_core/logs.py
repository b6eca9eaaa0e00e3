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
    if not logs:
        return {}
    values = [torch.as_tensor(value).detach().float().reshape(()) for value in logs.values()]
    device = next((value.device for value in values if value.device.type != "cpu"), torch.device("cpu"))
    return dict(zip(logs, torch.stack([value.to(device) for value in values]).tolist(), strict=True))


def mean_logs(entries: Iterable[Mapping[str, LogValue]]) -> dict[str, float]:
    """The mean of each key over many updates' logs, read to the host in one transfer."""
    collected: dict[str, list[LogValue]] = {}
    for entry in entries:
        for key, value in entry.items():
            collected.setdefault(key, []).append(value)
    return to_floats({key: torch.stack([torch.as_tensor(v).detach().float().reshape(()) for v in values]).mean()
                      for key, values in collected.items()})


def non_finite(logs: Mapping[str, float]) -> list[str]:
    """The keys whose value is NaN or infinite (a diverged update)."""
    return [key for key, value in logs.items() if not math.isfinite(value)]
