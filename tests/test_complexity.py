"""Complexity reproduces every published #Params / FLOPs figure (reference/published.md section 1)."""

import pytest

from search_space.complexity import format_flops, format_params, genome_complexity, parse_input_size
from search_space.presets import load_preset

COCO, COCO_LARGE, MPII = ((256, 192), 17), ((384, 288), 17), ((256, 256), 16)

# (preset, input, joints, convention, printed params, printed FLOPs, source paper's printing habit)
# Lite-HRNet rounds, Dite-HRNet truncates, HRNet rounds (G = 2^30, conv-macs).
PUBLISHED = [
    ("naive-litehrnet-18", *COCO, "torchstat", None, "194.8M", "round"),
    ("wider-naive-litehrnet-18", *COCO, "torchstat", "1.3M", "311.1M", "round"),
    ("litehrnet-18", *COCO, "torchstat", "1.1M", "205.2M", "round"),
    ("litehrnet-18", *COCO_LARGE, "torchstat", "1.1M", "461.6M", "round"),
    ("litehrnet-30", *COCO, "torchstat", "1.8M", "319.2M", "round"),
    ("litehrnet-30", *COCO_LARGE, "torchstat", "1.8M", "717.8M", "round"),
    ("ditehrnet-18", *COCO, "torchstat", "1.1M", "209.8M", "truncate"),
    ("ditehrnet-30", *COCO, "torchstat", "1.8M", "329.8M", "truncate"),
    ("ditehrnet-18", *COCO_LARGE, "torchstat", "1.1M", "471.8M", "truncate"),
    ("ditehrnet-30", *COCO_LARGE, "torchstat", "1.8M", "741.7M", "truncate"),
    ("hrnet-w32", *COCO, "conv-macs", "28.5M", "7.1G", "round"),
    ("hrnet-w32", *COCO_LARGE, "conv-macs", "28.5M", "16.0G", "round"),
    ("naive-litehrnet-18", *MPII, "torchstat", None, "259.6M", "round"),
    ("wider-naive-litehrnet-18", *MPII, "torchstat", "1.3M", None, "round"),
    ("litehrnet-18", *MPII, "torchstat", "1.1M", "273.4M", "round"),
    ("litehrnet-30", *MPII, "torchstat", "1.8M", "425.3M", "round"),
    ("ditehrnet-18", *MPII, "torchstat", "1.1M", "279.5M", "truncate"),
    ("ditehrnet-30", *MPII, "torchstat", "1.8M", "439.5M", "truncate"),
]


@pytest.mark.parametrize("preset,input_hw,joints,convention,params,flops,habit", PUBLISHED)
def test_published_figures_reproduced(preset, input_hw, joints, convention, params, flops, habit):
    result = genome_complexity(load_preset(preset), input_hw, joints)
    truncate = habit == "truncate"
    if params is not None:
        assert format_params(result.params, truncate) == params
    if flops is not None:
        assert format_flops(result.flops[convention], convention, truncate) == flops


@pytest.mark.parametrize(
    "preset,flops,params",
    [("litehrnet-18", 215_202_112, 1_130_769), ("ditehrnet-18", 219_991_891, 1_186_933)],
)
def test_exact_torchstat_integers(preset, flops, params):
    result = genome_complexity(load_preset(preset))
    assert result.flops["torchstat"] == flops
    assert result.params == params


def test_hrnet_w32_exact_params():
    assert genome_complexity(load_preset("hrnet-w32")).params == 28_536_113


def test_dite_torchstat_params_skip_the_mask_conv_that_never_runs():
    # One dense-context mask conv per module (C/2 + 1 params for the last branch) is built but never executed.
    result = genome_complexity(load_preset("ditehrnet-18"))
    assert result.torchstat_params < result.params
    lite = genome_complexity(load_preset("litehrnet-18"))
    assert lite.torchstat_params == lite.params


def test_published_inconsistencies_are_what_the_official_configs_give():
    """Two printed figures cannot come from the official configs; we pin what those configs really give.

    - Naive Lite-HRNet-18 has 760,365 parameters (0.76M); the paper prints 0.7M, although the same table rounds
      Lite-HRNet-30's 1.76M up to 1.8M, so no single printing rule yields both.
    - Wider Naive Lite-HRNet-18 on MPII (256x256, 16 joints) gives 414.6M; the README prints 418.7M while every
      other MPII figure equals its COCO figure scaled by the input area, as ours does (311.1M x 4/3 ~ 414.6M).
    """
    assert genome_complexity(load_preset("naive-litehrnet-18")).params == 760_365
    wider = genome_complexity(load_preset("wider-naive-litehrnet-18"), (256, 256), 16)
    assert format_flops(wider.flops["torchstat"], "torchstat") == "414.6M"


def test_conventions_are_ordered_sensibly():
    lite = genome_complexity(load_preset("litehrnet-18"))
    # torchstat adds BN, ReLU, pooling and bias on top of conv MACs, but counts the repeated fuse conv once.
    assert lite.flops["torchstat"] > lite.flops["conv-macs"]
    dite = genome_complexity(load_preset("ditehrnet-18"))
    # true MACs add the dynamic-kernel mixing and context pooling matmuls to the conv MACs.
    assert dite.flops["macs"] > dite.flops["conv-macs"]


def test_flops_scale_with_input_and_joints():
    hrnet = load_preset("hrnet-w32")
    small = genome_complexity(hrnet, (128, 96)).flops["conv-macs"]
    assert genome_complexity(hrnet, (256, 192)).flops["conv-macs"] == 4 * small  # every conv scales with area
    genome = load_preset("litehrnet-18")
    large = genome_complexity(genome, (256, 192)).flops["conv-macs"]
    more_joints = genome_complexity(genome, (256, 192), 18).flops["conv-macs"]
    assert more_joints - large == 40 * 64 * 48


def test_counting_a_preset_is_fast():
    import time

    genome = load_preset("ditehrnet-30")
    start = time.perf_counter()
    genome_complexity(genome)
    assert time.perf_counter() - start < 5  # generous bound; bench figures are in bench/RESULTS.md


@pytest.mark.parametrize("text", ["250x192", "256x190", "256", "axb", "0x0", "256x192x3"])
def test_bad_input_sizes_are_rejected(text):
    with pytest.raises(ValueError, match="input"):
        parse_input_size(text)
