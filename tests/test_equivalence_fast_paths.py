"""The fast training configuration computes the same function as the reference (NCHW, grouped dynamic kernels)."""

import copy

import pytest
import torch
from torch import nn

from blocks.dynamic import KernelAggregation
from blocks.layers import cat_shuffle, channel_shuffle
from blocks.network import PoseNet, prepare_for_training, prepare_input
from search_space.presets import load_preset

ARCHS = ["ditehrnet-18", "litehrnet-18", "naive-litehrnet-18"]


def build_pair(arch: str) -> tuple[nn.Module, nn.Module]:
    """Two float64 copies of one network with the same random weights and BN statistics: reference, fast."""
    torch.manual_seed(0)
    model = PoseNet(load_preset(arch).resolve()).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    reference = prepare_for_training(copy.deepcopy(model), fast=False)
    fast = prepare_for_training(copy.deepcopy(model), fast=True)
    return reference, fast


def executed_leaves(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str]]:
    """(name, type) of every leaf module call, in call order: what the complexity hooks see."""
    calls = []
    names = {m: n for n, m in model.named_modules()}
    hooks = [
        m.register_forward_hook(lambda m, a, o: calls.append((names[m], type(m).__name__)))
        for m in model.modules()
        if not list(m.children())
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return calls


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("arch", ARCHS)
def test_fast_configuration_matches_reference(arch, mode):
    reference, fast = build_pair(arch)
    reference.train(mode == "train")
    fast.train(mode == "train")
    x = torch.randn(2, 3, 64, 64, dtype=torch.double)
    x_ref = prepare_input(x.clone(), fast=False).requires_grad_()
    x_fast = prepare_input(x.clone(), fast=True).requires_grad_()
    out_ref, out_fast = reference(x_ref), fast(x_fast)
    assert out_fast.shape == out_ref.shape == (2, 17, 16, 16)
    assert out_ref.abs().max() > 1e-3  # a real signal, not a network that outputs (almost) nothing
    torch.testing.assert_close(out_fast, out_ref, atol=1e-5, rtol=0)
    # the same gradients, for the input and every parameter
    weights = torch.randn_like(out_ref)
    (out_ref * weights).sum().backward()
    (out_fast * weights).sum().backward()
    torch.testing.assert_close(x_fast.grad, x_ref.grad, atol=1e-5, rtol=0)
    for (name, p_ref), p_fast in zip(reference.named_parameters(), fast.parameters(), strict=True):
        assert (p_ref.grad is None) == (p_fast.grad is None), name
        if p_ref.grad is not None:
            torch.testing.assert_close(p_fast.grad, p_ref.grad, atol=1e-5, rtol=1e-5, msg=name)
    if mode == "train":  # BN running statistics are updated the same way
        for b_ref, b_fast in zip(reference.buffers(), fast.buffers(), strict=True):
            torch.testing.assert_close(b_fast, b_ref, atol=1e-7, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_same_leaf_modules_run(arch):
    reference, fast = build_pair(arch)
    x = torch.randn(1, 3, 64, 64, dtype=torch.double)
    assert executed_leaves(fast.eval(), prepare_input(x)) == executed_leaves(reference.eval(), x)
    assert [type(m) for m in fast.modules()] == [type(m) for m in reference.modules()]


def test_formulations_are_set_per_module():
    reference, fast = build_pair("ditehrnet-18")
    aggs = [m for m in fast.modules() if isinstance(m, KernelAggregation)]
    assert aggs and all(m.formulation == "fast" for m in aggs)
    assert all(m.formulation == "grouped" for m in reference.modules() if isinstance(m, KernelAggregation))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("groups", [2, 3])
def test_cat_shuffle_in_both_layouts(groups, channels_last):
    parts = [torch.randn(2, 4, 3, 5) for _ in range(groups)]
    if channels_last:
        parts = [p.contiguous(memory_format=torch.channels_last) for p in parts]
    expected = torch.cat(parts, 1).view(2, groups, 4, 3, 5).transpose(1, 2).reshape(2, 4 * groups, 3, 5)
    got = cat_shuffle(parts)
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    x = torch.cat(parts, 1)
    torch.testing.assert_close(channel_shuffle(x, groups), expected, atol=0, rtol=0)
