"""jedi_core.nn.ops: masked statistics, categorical sampling and the fp32 boundary, against references."""

import pytest
import torch
from torch import nn

from jedi_core.nn.ops import fp32_outputs, masked_mean, masked_std, sample_categorical


def test_masked_statistics_equal_boolean_indexing():
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(3, 5, 2, 4, 4, generator=generator)
    mask = torch.rand(3, 5, generator=generator) > 0.3
    reference = values[mask].std(dim=0).mean()
    assert torch.allclose(masked_std(values, mask.float()), reference, atol=1e-6)
    assert torch.allclose(masked_std(values, mask), reference, atol=1e-6)


def test_masked_mean_equals_boolean_indexing_and_is_zero_on_an_empty_mask():
    generator = torch.Generator().manual_seed(1)
    values = torch.randn(4, 7, generator=generator)
    mask = torch.rand(4, 7, generator=generator) > 0.5
    assert torch.allclose(masked_mean(values, mask), values[mask].mean(), atol=1e-6)
    assert torch.allclose(masked_mean(values, mask.float()), values[mask].mean(), atol=1e-6)
    assert masked_mean(values, torch.zeros_like(mask)) == 0  # not NaN


def test_categorical_sampling_draws_what_multinomial_draws():
    probabilities = torch.tensor([0.1, 0.2, 0.7]).expand(20_000, 3)
    ours = sample_categorical(probabilities, torch.Generator().manual_seed(0))
    reference = torch.multinomial(probabilities, 1, generator=torch.Generator().manual_seed(0)).squeeze(-1)
    assert torch.equal(ours, reference)  # the same algorithm: the same draws from the same generator
    frequencies = torch.bincount(ours, minlength=3) / len(ours)
    assert torch.allclose(frequencies, probabilities[0], atol=0.015)


class _Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(3, 2)

    def forward(self, x):
        y = self.layer(x)
        return y, (y.argmax(-1), y * 2)


@pytest.mark.parametrize("hooked", [False, True])
def test_fp32_outputs_makes_every_float_output_fp32_under_bf16_autocast(hooked):
    module = _Pair()
    names = list(module.state_dict())
    if hooked:
        assert fp32_outputs(module) is module
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, (index, doubled) = module(torch.randn(4, 3))
    expected = torch.float32 if hooked else torch.bfloat16
    assert y.dtype == doubled.dtype == expected
    assert index.dtype == torch.int64  # integer outputs are left alone
    assert list(module.state_dict()) == names
