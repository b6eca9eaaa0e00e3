"""jedi_core.runtime: devices and seeds, atomic writes, clocks, device-side logs, precision, compilation."""

import time
import warnings

import numpy as np
import pytest
import torch

from jedi_core.runtime import (
    Stopwatch,
    atomic_write_bytes,
    atomic_write_text,
    autocast,
    compile_modules,
    mean_logs,
    non_finite,
    resolve_device,
    seed_everything,
    set_backend_flags,
    to_floats,
    use_channels_last,
)


def test_auto_resolves_to_an_available_device():
    device = resolve_device("auto")
    assert device.type in ("cpu", "cuda", "mps")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised on a machine without a GPU")
def test_asking_for_an_absent_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="asked for a GPU.*device=auto or device=cpu"):
        resolve_device("cuda")


def test_seed_everything_makes_torch_and_numpy_repeat():
    first = (seed_everything(3).random(), torch.rand(2), np.random.rand())
    second = (seed_everything(3).random(), torch.rand(2), np.random.rand())
    assert first[0] == second[0] and torch.equal(first[1], second[1]) and first[2] == second[2]


def test_atomic_writes_replace_the_whole_file_and_leave_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    atomic_write_text(path, "old")
    atomic_write_bytes(path, b"new, and longer")
    assert path.read_bytes() == b"new, and longer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_device_logs_read_back_as_floats_and_their_means():
    entries = [{"loss": torch.tensor(float(i)), "accuracy": torch.tensor(0.5 * i), "steps": 2.0}
               for i in range(4)]
    assert mean_logs(entries) == {"loss": 1.5, "accuracy": 0.75, "steps": 2.0}
    assert to_floats({"a": torch.tensor(0.25), "b": 3}) == {"a": 0.25, "b": 3.0}
    assert to_floats({}) == {}
    logs = {"loss": float("nan"), "entropy": 1.0, "grad_norm": float("inf")}
    assert non_finite(logs) == ["loss", "grad_norm"]


def test_autocast_runs_matmuls_in_bf16_only_when_asked():
    x = torch.randn(2, 3)
    layer = torch.nn.Linear(3, 2)
    with autocast("cpu", "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert layer(x).dtype == torch.float32
    with pytest.raises(ValueError, match="precision 'fp16' is not allowed"):
        autocast("cpu", "fp16")


def test_compile_modules_compiles_in_place_and_keeps_parameter_names():
    torch.manual_seed(0)
    modules = {"a": torch.nn.Linear(3, 2), "b": torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())}
    names = {key: list(module.state_dict()) for key, module in modules.items()}
    x = torch.randn(4, 3)
    eager = modules["b"](modules["a"](x))
    assert compile_modules(modules, "off") == []
    assert all(module._compiled_call_impl is None for module in modules.values())  # "off" compiles nothing
    assert compile_modules(modules, "reduce-overhead", backend="aot_eager") == ["a", "b"]
    assert all(module._compiled_call_impl is not None for module in modules.values())
    torch.testing.assert_close(modules["b"](modules["a"](x)), eager)
    assert {key: list(module.state_dict()) for key, module in modules.items()} == names


def test_compile_modules_warns_of_reduce_overhead_with_inductor_only():
    with pytest.warns(UserWarning, match="reduce-overhead: inductor.s CUDA graph trees may overwrite"):
        compile_modules({"a": torch.nn.Linear(3, 2)}, "reduce-overhead")  # compiles lazily: nothing runs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile_modules({"a": torch.nn.Linear(3, 2)}, "default")
        compile_modules({"a": torch.nn.Linear(3, 2)}, "reduce-overhead", backend="aot_eager")


def test_backend_flags_are_set_both_ways():
    backends = torch.backends
    flags = (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32, backends.cudnn.benchmark)
    try:
        set_backend_flags(tf32=True, cudnn_benchmark=True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.benchmark
        set_backend_flags(tf32=False, cudnn_benchmark=False)  # a later run in the same process turns them off
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert not torch.backends.cudnn.benchmark
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags[:2]
        torch.backends.cudnn.benchmark = flags[2]


def test_channels_last_is_applied_on_a_cpu_by_auto_and_on_any_device_by_on():
    def kernel_format(setting, device):
        conv = use_channels_last(torch.nn.Conv2d(4, 4, 3), setting, device)
        return conv.weight.is_contiguous(memory_format=torch.channels_last), conv.weight.is_contiguous()
    assert kernel_format("auto", "cpu") == (True, False)
    assert kernel_format("off", "cpu") == (False, True)
    assert kernel_format("on", "cpu") == (True, False)
    assert kernel_format("auto", "meta") == (False, True)  # not a CPU: left as it is
    with pytest.raises(ValueError, match="channels_last 'yes' is not allowed; choose one of: auto, on, off"):
        use_channels_last(torch.nn.Conv2d(4, 4, 3), "yes", "cpu")


def test_a_stopwatchs_cpu_clock_stands_still_while_the_process_waits():
    watch = Stopwatch()
    time.sleep(0.3)
    waited_cpu = watch.cpu_seconds()
    assert watch.seconds() >= 0.3 and waited_cpu < 0.15
    sum(range(3_000_000))  # working: the CPU clock runs
    assert watch.cpu_seconds() > waited_cpu
