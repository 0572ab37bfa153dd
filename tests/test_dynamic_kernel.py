"""Dynamic kernel aggregation: every fast formulation equals a plain per-sample reference within 1e-5."""

import pytest
import torch
import torch.nn.functional as F

from blocks.dynamic import DynamicConv, KernelAggregation


def per_sample_reference(agg: KernelAggregation, x: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """The definition: for each sample, mix the K kernels with its attention, then run an ordinary conv."""
    outputs = []
    for b in range(x.shape[0]):
        kernel = sum(attention[b, k] * agg.weight[k] for k in range(agg.num_kernels))
        outputs.append(
            F.conv2d(x[b : b + 1], kernel, stride=agg.stride, padding=agg.kernel_size // 2, groups=agg.groups)
        )
    return torch.cat(outputs)


CASES = [
    # (in, out, kernel, stride, groups, K): depthwise 3..9, strided, 1x1 dense, grouped
    (20, 20, 3, 1, 20, 4),
    (40, 40, 5, 1, 40, 2),
    (16, 16, 9, 1, 16, 4),
    (16, 16, 3, 2, 16, 4),
    (16, 4, 1, 1, 1, 4),
    (4, 16, 1, 1, 1, 4),
    (12, 12, 3, 1, 3, 2),
]


@pytest.mark.parametrize("formulation", ["fast", "grouped"])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_aggregation_matches_per_sample_reference(case, formulation, channels_last, monkeypatch):
    torch.manual_seed(0)
    in_c, out_c, k, stride, groups, num_kernels = case
    agg = KernelAggregation(in_c, out_c, k, stride, groups, num_kernels).double()
    monkeypatch.setattr(KernelAggregation, "formulation", formulation)
    x = torch.randn(5, in_c, 12, 10, dtype=torch.double)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    attention = torch.rand(5, num_kernels, dtype=torch.double)
    expected = per_sample_reference(agg, x, attention)
    got = agg(x, attention)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("formulation", ["fast", "grouped"])
def test_gradients_match_reference(formulation, monkeypatch):
    torch.manual_seed(1)
    agg = KernelAggregation(8, 8, 3, 1, 8, 4).double()
    monkeypatch.setattr(KernelAggregation, "formulation", formulation)
    x = torch.randn(3, 8, 9, 7, dtype=torch.double, requires_grad=True)
    attention = torch.rand(3, 4, dtype=torch.double, requires_grad=True)
    grads = torch.autograd.grad(agg(x, attention).square().sum(), (x, attention, agg.weight))
    ref = torch.autograd.grad(per_sample_reference(agg, x, attention).square().sum(), (x, attention, agg.weight))
    for got, expected in zip(grads, ref, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-6)


def test_float32_module_within_tolerance():
    torch.manual_seed(2)
    conv = DynamicConv(20, 20, 3, groups=20, num_kernels=4).train()
    x = torch.randn(8, 20, 16, 12)
    attention = conv.attention(x)
    torch.testing.assert_close(conv(x), per_sample_reference(conv.aggregation, x, attention), atol=1e-5, rtol=0)
