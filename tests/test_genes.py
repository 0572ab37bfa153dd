"""The gene registry and per-stage genes: hybrids build, round-trip and count exactly; a new choice is one entry."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from blocks.channel_weighting import ChannelWeightingBlock
from blocks.multibranch import AcrossBranches, PerBranch
from blocks.network import PoseNet
from blocks.shuffle import ShuffleUnit
from search_space.complexity import CONVENTIONS, genome_complexity
from search_space.genes import GENES, Choice, PerStage, register_choice
from search_space.genome import Genome, GenomeError, parse_gene_override
from search_space.presets import PRESETS, load_preset
from search_space.space import SearchSpace

# The one-line form of every preset before genes could be given per stage: runs log it and caches key on it.
COMPACT_BEFORE = {
    "ditehrnet-18": "stem=dite width=40 modules=2,4,2 blocks=2 block=weighting cross=dcm within=gcm cross_ratio=8 "
    "within_ratio=4,4,8,8 dsc_groups=1,1,2,4 kernels=4,4,2,1 fuse=official-relu transition=dw head=iterative",
    "ditehrnet-30": "stem=dite width=40 modules=3,8,3 blocks=2 block=weighting cross=dcm within=gcm cross_ratio=8 "
    "within_ratio=4,4,8,8 dsc_groups=1,1,2,4 kernels=4,4,2,1 fuse=official-relu transition=dw head=iterative",
    "hrnet-w32": "stem=hrnet width=32 modules=1,4,3 blocks=4 block=residual cross=none within=none cross_ratio=8 "
    "within_ratio=4 dsc_groups=1 kernels=1 fuse=sum transition=conv head=simple",
    "litehrnet-18": "stem=lite width=40 modules=2,4,2 blocks=2 block=weighting cross=crw within=sw cross_ratio=8 "
    "within_ratio=4 dsc_groups=1 kernels=1 fuse=official transition=dw head=iterative",
    "litehrnet-30": "stem=lite width=40 modules=3,8,3 blocks=2 block=weighting cross=crw within=sw cross_ratio=8 "
    "within_ratio=4 dsc_groups=1 kernels=1 fuse=official transition=dw head=iterative",
    "naive-litehrnet-18": "stem=lite width=30 modules=2,4,2 blocks=2 block=shuffle cross=none within=none "
    "cross_ratio=8 within_ratio=4 dsc_groups=1 kernels=1 fuse=official transition=dw head=iterative",
    "wider-naive-litehrnet-18": "stem=lite width=40 modules=2,4,2 blocks=2 block=shuffle cross=none within=none "
    "cross_ratio=8 within_ratio=4 dsc_groups=1 kernels=1 fuse=official transition=dw head=iterative",
}
HYBRID = "block=shuffle/weighting/weighting"  # shuffle blocks in stage 2, channel weighting in stages 3-4


def torchstat(genome: Genome) -> int:
    return genome_complexity(genome).flops["torchstat"]


def test_compact_form_of_every_preset_is_unchanged():
    assert set(COMPACT_BEFORE) == set(PRESETS)
    for name, line in COMPACT_BEFORE.items():
        assert load_preset(name).compact() == line


def test_hybrid_builds_runs_and_round_trips():
    genome = load_preset("litehrnet-18").with_genes(dict([parse_gene_override(HYBRID)]))
    assert genome.genes["block"] == PerStage(("shuffle", "weighting", "weighting"))
    assert HYBRID in genome.compact()
    assert Genome.from_compact(genome.compact()) == genome
    assert Genome.from_yaml(genome.to_yaml()) == genome
    assert Genome.from_dict(json.loads(genome.to_json())) == genome
    assert json.loads(genome.to_json())["block"] == {"stages": ["shuffle", "weighting", "weighting"]}
    yaml_form = load_preset("litehrnet-18").with_genes(
        dict([parse_gene_override("block={stages: [shuffle, weighting, weighting]}")])
    )
    assert yaml_form == genome

    model = PoseNet(genome.resolve()).eval()
    stage2, stage3, stage4 = (stage[0].layers for stage in model.stages)
    assert isinstance(stage2, PerBranch) and isinstance(stage2[0][0], ShuffleUnit)
    for layers in (stage3, stage4):
        assert isinstance(layers, AcrossBranches) and isinstance(layers[0], ChannelWeightingBlock)
        assert layers[0].cross is not None and layers[0].within is not None
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 17, 16, 16)


def test_hybrid_complexity_is_the_sum_of_its_stages():
    lite = load_preset("litehrnet-18")
    hybrid = lite.with_genes({"block": PerStage(("shuffle", "weighting", "weighting"))})
    flops = torchstat(hybrid)
    # Same width as wider-naive-litehrnet-18 (all shuffle) and litehrnet-18 (all weighting): strictly between.
    assert torchstat(lite) < flops < torchstat(load_preset("wider-naive-litehrnet-18"))
    # Exactly: litehrnet-18 with its stage 2 swapped for shuffle blocks, the swap counted on a one-stage net.
    one_stage = lite.with_genes({"modules": [2]})
    swap = torchstat(one_stage.with_genes({"block": "shuffle", "cross": "none", "within": "none"}))
    assert flops == torchstat(lite) + swap - torchstat(one_stage)


def test_per_stage_values_collapse_to_one_value_when_they_agree():
    same = Genome.from_compact("block=weighting/weighting/weighting cross=crw/crw/crw")
    assert same == load_preset("litehrnet-18")
    assert same.compact() == COMPACT_BEFORE["litehrnet-18"]
    # cross is off in stage 2 only because stage 2 has no channel weighting: the same network as cross=crw
    assert Genome.from_compact(f"{HYBRID} cross=none/crw/crw").genes["cross"] == "crw"
    mixed = Genome.from_compact("cross=crw/crw/dcm cross_ratio=8/4/4")
    assert {"cross=crw/crw/dcm", "cross_ratio=8/4/4"} <= set(mixed.compact().split())


def test_per_stage_per_branch_values():
    genome = Genome.from_compact("within=gcm within_ratio=4,4/4,4,8/4,4,8,8 kernels=1/1/4,4,2,1")
    spec = genome.resolve()
    assert [s.within_ratios for s in spec.stages] == [(4, 4), (4, 4, 8), (4, 4, 8, 8)]
    assert [s.kernels for s in spec.stages] == [(1, 1), (1, 1, 1), (4, 4, 2, 1)]
    assert Genome.from_compact(genome.compact()) == genome
    assert Genome.from_yaml(genome.to_yaml()) == genome


@pytest.mark.parametrize(
    "line,gene,fragment",
    [
        ("block=shuffle/weighting", "block", "2 stage values but the network has 3 stages"),
        ("modules=2,4 block=shuffle/weighting/weighting", "block", "3 stage values but the network has 2"),
        (f"{HYBRID} cross=crw/crw/crw", "cross", "only applies to block=weighting (stage 2 has block=shuffle)"),
        ("block=shuffle/shuffle/residual cross=crw", "cross", "only applies to block=weighting"),
        (f"{HYBRID} kernels=4/1/1", "kernels", "set kernels=1 at stage 2"),
        ("width=10/20/30", "width", "cannot be given per stage"),
        ("fuse=sum/sum/official", "fuse", "cannot be given per stage"),
        ("block=shuffle/dense/weighting", "block", "stage 3: unknown value"),
        ("within_ratio=4/4,4/4,4,8,8", "within_ratio", "stage 3 has 2 values but 3 branches"),
        ("within_ratio=4/4/4,4,8,8,8", "within_ratio", "stage 4 has 5 values"),
        ("block=residual/shuffle/shuffle cross=none within=none width=31", "width", "block=shuffle splits"),
        ("dsc_groups=1/1/3", "dsc_groups", "branch 0 at stage 4 has 20 channels"),
        ("cross_ratio=8/8/64 width=8", "cross_ratio", "reduces the 60 stage-4 channels to none"),
    ],
)
def test_per_stage_validation_names_gene_and_value(line, gene, fragment):
    with pytest.raises(GenomeError) as info:
        Genome.from_compact(line)
    assert info.value.gene == gene
    assert str(info.value).startswith(f"gene {gene}=")
    assert fragment in str(info.value)


def test_a_yaml_per_stage_value_must_be_a_stages_list():
    with pytest.raises(GenomeError, match=r"written \{stages: \[stage2, stage3, stage4\]\}"):
        Genome.from_yaml("block: {stage2: shuffle}")


class EfficientChannelAttention(nn.Module):
    """ECA-Net's attention, a toy within-branch module: global mean, a 3-tap conv across channels, sigmoid."""

    def __init__(self, channels: int, ratio: int) -> None:
        super().__init__()
        self.channels = channels
        self.weight = nn.Parameter(torch.full((1, 1, 3), 1 / 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3)).unsqueeze(1)  # (B, 1, C)
        return x * torch.sigmoid(F.conv1d(pooled, self.weight, padding=1)).squeeze(1)[..., None, None]


def eca_macs(module: EfficientChannelAttention, args: tuple, out: torch.Tensor) -> int:
    return 3 * module.channels * args[0].shape[0]


@pytest.fixture
def eca_choice(monkeypatch):
    """`within: eca` registered for one test, then gone again (registry and counting rules)."""
    monkeypatch.setitem(GENES, "within", GENES["within"])
    register_choice(
        "within",
        Choice(
            "eca",
            "efficient channel attention",
            EfficientChannelAttention,
            counting=dict.fromkeys(CONVENTIONS, eca_macs),
        ),
    )
    yield
    for conv in CONVENTIONS.values():
        conv.formulas.pop(EfficientChannelAttention, None)


def test_a_new_choice_is_one_registry_entry(eca_choice):
    genome = load_preset("litehrnet-18").with_genes(dict([parse_gene_override("within=eca")]))
    assert Genome.from_compact(genome.compact()) == genome
    model = PoseNet(genome.resolve()).eval()
    attention = [m for m in model.modules() if isinstance(m, EfficientChannelAttention)]
    assert attention
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 17, 16, 16)
    # Counted by its own rule, on top of the same network without a within-branch module.
    without = genome_complexity(genome.with_genes({"within": "none"}))
    counted = genome_complexity(genome)
    for name in CONVENTIONS:
        assert counted.flops[name] == without.flops[name] + sum(3 * m.channels for m in attention)
    # Per stage too, and a search space may list it.
    mixed = genome.with_genes({"within": PerStage(("sw", "sw", "eca"))})
    assert "within=sw/sw/eca" in mixed.compact()
    space = SearchSpace.from_dict({"genes": {"within": ["sw", "eca", {"stages": ["sw", "sw", "eca"]}]}})
    assert [g.genes["within"] for g in space.valid_genomes()] == ["sw", "eca", PerStage(("sw", "sw", "eca"))]


def test_registering_a_taken_value_is_refused(eca_choice):
    with pytest.raises(ValueError, match="already has a value 'eca'"):
        register_choice("within", Choice("eca", "again", EfficientChannelAttention))


def test_space_with_per_stage_choices_and_conditional_genes():
    space = SearchSpace.from_dict(
        {
            "genes": {
                "block": ["shuffle", "weighting", {"stages": ["shuffle", "weighting", "weighting"]}],
                "cross": ["crw", "none", {"stages": ["none", "crw", "dcm"]}],
                "cross_ratio": [8, 16],
            }
        }
    )
    assert space.parameters()["gene.block"] == ["shuffle", "weighting", "shuffle/weighting/weighting"]
    by_block: dict[str, list[dict[str, str]]] = {}
    for params in space.samples():
        by_block.setdefault(params["gene.block"], []).append(params)
    assert by_block["shuffle"] == [{"gene.block": "shuffle"}]  # no channel weighting anywhere: cross is inactive
    # A hybrid has channel weighting in stages 3-4, so its weighting-only genes are chosen.
    hybrid = {p["gene.cross"] for p in by_block["shuffle/weighting/weighting"]}
    assert hybrid == {"crw", "none", "none/crw/dcm"}
    genome = space.genome({"gene.block": "shuffle/weighting/weighting", "gene.cross": "none/crw/dcm"})
    assert [s.cross is not None for s in genome.resolve().stages] == [False, True, True]
    assert space.params_of(genome) == {
        "gene.block": "shuffle/weighting/weighting",
        "gene.cross": "none/crw/dcm",
        "gene.cross_ratio": "8",
    }
    genomes = [g.compact() for g in space.valid_genomes()]
    assert len(genomes) == len(set(genomes)) == 1 + 2 * (2 + 1 + 2)
