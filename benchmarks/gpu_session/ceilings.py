"""The device's ceilings that decide where JEDI's time goes: the cost of one tiny kernel launched eagerly
against replayed from a CUDA graph (an imagined step launches about a thousand kernels), copy bandwidth and
the matmul rate.

    python benchmarks/gpu_session/ceilings.py --device cuda --out OUT/ceilings.json

On a CPU (the dry run) the same measurements run at small sizes in fp32, and the CUDA-graph part is listed
under ``skipped_parts``. A few seconds either way.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch


def timed(fn: Callable[[], object], calls: int, device: torch.device) -> float:
    """Seconds per call of ``fn``, after one warm-up call (CUDA events on a GPU: no host timing noise)."""
    fn()
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3 / calls
    began = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - began) / calls


def matmul_rate(size: int, dtype: torch.dtype, device: torch.device) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    return 2 * size**3 / timed(lambda: a @ b, 10 if device.type == "cuda" else 3, device) / 1e12


def copy_rate(numel: int, device: torch.device) -> float:
    """GB/s read plus written by a copy of ``numel`` floats."""
    x = torch.randn(numel, device=device)
    y = torch.empty_like(x)
    return 2 * numel * 4 / timed(lambda: y.copy_(x), 10, device) / 1e9


def measure(device: torch.device) -> dict:
    cuda = device.type == "cuda"
    result: dict = {"device": torch.cuda.get_device_name(device) if cuda else "cpu",
                    "torch": torch.__version__, "cuda": torch.version.cuda, "skipped_parts": []}
    size, dtype = (8192, torch.bfloat16) if cuda else (512, torch.float32)
    result[f"matmul_TFLOPs_{str(dtype).removeprefix('torch.')}_{size}"] = matmul_rate(size, dtype, device)
    result["copy_GBps_read_plus_write"] = copy_rate(2**28 if cuda else 2**24, device)  # 1 GiB GPU, 64 MiB CPU
    small = torch.zeros(1024, device=device)
    # A launch-bound rate: the host's cost per kernel, what an eager imagined step pays ~1,000 times.
    result["eager_tiny_kernel_us"] = 1e6 * timed(lambda: small.add_(1), 5000 if cuda else 2000, device)
    if cuda:
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up off the default stream, as capture requires
            for _ in range(3):
                small.add_(1)
        torch.cuda.current_stream().wait_stream(stream)
        with torch.cuda.graph(graph):
            for _ in range(1000):
                small.add_(1)
        result["graph_tiny_kernel_us"] = 1e6 * timed(graph.replay, 20, device) / 1000
        result["eager_over_graph"] = result["eager_tiny_kernel_us"] / result["graph_tiny_kernel_us"]
    else:
        result["graph_tiny_kernel_us"] = None
        result["skipped_parts"].append("graph_tiny_kernel_us: CUDA graphs need a GPU")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = measure(torch.device(args.device))
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
