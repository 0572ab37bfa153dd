"""Counting cannot be fooled (a module without a rule is an error) and the memoised sum of parts is exact."""

import random
import re

import pytest
import torch
from torch import nn

from blocks.network import PoseNet, network_parts
from search_space import complexity
from search_space.complexity import (
    CONVENTIONS,
    NoCountingRule,
    forget_counts,
    measure,
    register_rule,
    spec_complexity,
)
from search_space.presets import PRESETS, load_preset
from search_space.space import DEFAULT_SPACE, SearchSpace


class Gain(nn.Module):
    """A custom leaf with a parameter and no counting rule."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


class WithConv1d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.proj = nn.Conv1d(4, 5, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(x).flatten(2))


class WithAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).permute(2, 0, 1)
        return self.attention(tokens, tokens, tokens)[0]


@pytest.fixture
def restore_rules():
    saved = {name: dict(conv.formulas) for name, conv in CONVENTIONS.items()}
    yield
    for name, conv in CONVENTIONS.items():
        conv.formulas.clear()
        conv.formulas.update(saved[name])
    forget_counts()  # part costs counted under the test's rules


@pytest.mark.parametrize(
    "factory,type_name",
    [
        (lambda: nn.Sequential(nn.Conv2d(3, 4, 1), Gain()), f"{Gain.__module__}.Gain"),
        (WithConv1d, "torch.nn.modules.conv.Conv1d"),
        (WithAttention, "torch.nn.modules.activation.MultiheadAttention"),
    ],
)
def test_a_module_without_a_rule_is_an_error_naming_its_type(factory, type_name):
    with pytest.raises(NoCountingRule, match=f"module type {re.escape(type_name)}:.*register_rule"):
        measure(factory, (32, 32))


def test_modules_without_parameters_that_do_not_multiply_need_no_rule():
    result = measure(lambda: nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.Tanh(), nn.Dropout()), (32, 32))
    assert result.flops["conv-macs"] == 3 * 4 * 32 * 32


def test_a_registered_rule_makes_the_module_count(restore_rules):
    per_output = {name: (lambda m, a, o: o.numel()) for name in CONVENTIONS}
    register_rule(Gain, per_output)
    conv_only = measure(lambda: nn.Sequential(nn.Conv2d(3, 4, 1, bias=False)), (32, 32))
    with_gain = measure(lambda: nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), Gain()), (32, 32))
    for name in CONVENTIONS:
        assert with_gain.flops[name] == conv_only.flops[name] + 4 * 32 * 32
    assert with_gain.params == conv_only.params + 1

    conv1d = {name: (lambda m, a, o: o.numel() * m.in_channels) for name in CONVENTIONS}
    register_rule(nn.Conv1d, conv1d)
    result = measure(WithConv1d, (8, 8))
    assert result.flops["conv-macs"] == 3 * 4 * 9 * 64 + 4 * 5 * 64


def _exact(spec, input_hw):
    return measure(lambda: PoseNet(spec), input_hw)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("input_hw,joints", [((256, 192), 17), ((128, 96), 16)])
def test_the_sum_of_parts_equals_the_full_count_on_every_preset(preset, input_hw, joints):
    spec = load_preset(preset).resolve(joints)
    assert spec_complexity(spec, input_hw) == _exact(spec, input_hw)


def test_the_sum_of_parts_equals_the_full_count_on_random_genomes():
    genomes = list(SearchSpace.from_file(DEFAULT_SPACE).valid_genomes())
    for genome in random.Random(10).sample(genomes, 30):
        spec = genome.resolve()
        assert spec_complexity(spec) == _exact(spec, (256, 192)), genome.compact()


@pytest.mark.parametrize("blocks", [1, 2, 3])
@pytest.mark.parametrize("block", ["weighting", "shuffle", "residual"])
def test_the_sum_of_parts_is_exact_for_any_block_count(block, blocks):
    genes = {"block": block, "blocks": blocks}
    if block != "weighting":  # the genes of channel weighting must be off
        genes |= {"cross": "none", "within": "none", "cross_ratio": 8, "within_ratio": 4, "dsc_groups": 1, "kernels": 1}
    spec = load_preset("ditehrnet-18").with_genes(genes).resolve()
    assert spec_complexity(spec, (128, 96)) == _exact(spec, (128, 96))


def _leaf_kinds(keys):
    """The kinds of the parts counted by building them (a part made of pieces is only their sum)."""
    return {key[0][0] for key in keys} - {"layers", "channel-weighting"}


def test_a_piece_is_counted_once_for_every_network_that_has_it():
    forget_counts()
    lite = load_preset("litehrnet-18")
    spec_complexity(lite.resolve())
    before = set(complexity._PART_COSTS)
    assert {"cross", "split-conv", "within"} <= _leaf_kinds(before)
    # another cross-branch module: the split convs, within-branch modules, fuses etc. are all counted already
    spec_complexity(lite.with_genes({"cross": "dcm"}).resolve())
    new = set(complexity._PART_COSTS) - before
    assert _leaf_kinds(new) == {"cross"}
    assert len([key for key in new if key[0][0] == "cross"]) == len(lite.genes["modules"])  # one per stage


def test_equal_genomes_resolve_to_equal_specs_that_share_their_parts():
    genome = load_preset("ditehrnet-18")
    spec, again = genome.resolve(), type(genome)(dict(genome.genes)).resolve()
    assert spec == again and hash(spec) == hash(again)
    assert [p.key for p in network_parts(spec)] == [p.key for p in network_parts(again)]


def test_posenet_is_built_from_exactly_its_parts():
    spec = load_preset("litehrnet-18").resolve()
    parts = network_parts(spec)
    model = PoseNet(spec)
    built = sum(sum(p.numel() for p in part.build().parameters()) for part in parts)
    assert built == sum(p.numel() for p in model.parameters())
    modules = sum(stage.modules for stage in spec.stages)
    assert [p.place for p in parts].count("layers") == modules == sum(len(s) for s in model.stages)


def _leaves(module: nn.Module) -> list[str]:
    return [type(m).__name__ for m in module.modules() if not m._modules]


@pytest.mark.parametrize("preset", ["ditehrnet-18", "naive-litehrnet-18", "litehrnet-18"])
def test_a_part_made_of_pieces_is_exactly_its_pieces(preset):
    """The assembled module adds no parameter and no leaf module to its pieces (so its cost is their sum)."""
    composites = [part for part in network_parts(load_preset(preset).resolve()) if part.pieces]
    assert composites
    while composites:
        part = composites.pop()
        whole = part.build()
        pieces = [piece.build() for piece in part.pieces]
        assert sum(p.numel() for p in whole.parameters()) == sum(p.numel() for m in pieces for p in m.parameters())
        assert _leaves(whole) == [name for m in pieces for name in _leaves(m)]
        composites += [piece for piece in part.pieces if piece.pieces]


def test_counting_parts_leaves_the_random_stream_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    spec_complexity(load_preset("naive-litehrnet-18").resolve(5), (64, 64))  # parts new to this process
    assert torch.equal(torch.rand(3), expected)
