import numpy as np
import pytest
import torch

from jedi_core.runtime import resolve_device, seed_everything


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
