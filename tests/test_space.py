"""Search spaces: read from YAML, validated against the gene vocabulary, presets as points, conditional genes."""

from pathlib import Path

import pytest

from search_space.genes import WEIGHTING_ONLY, PerStage
from search_space.genome import GenomeError
from search_space.presets import PRESETS, load_preset
from search_space.space import DEFAULT_SPACE, SearchSpace, SpaceError, decode, encode

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = DEFAULT_SPACE


@pytest.fixture(scope="module")
def space():
    return SearchSpace.from_file(DEFAULT)


def test_default_space_holds_every_lite_and_dite_preset(space):
    for name in PRESETS:
        if name == "hrnet-w32":
            with pytest.raises(SpaceError, match="not among the space's choices"):
                space.params_of(load_preset(name))
            continue
        params = space.params_of(load_preset(name))
        assert space.genome(params).genes == load_preset(name).genes


def test_default_space_varies_what_the_issue_lists(space):
    for gene in (
        "block",
        "cross",
        "within",
        "dsc_groups",
        "kernels",
        "cross_ratio",
        "within_ratio",
        "width",
        "modules",
    ):
        assert len(space.choices[gene]) >= 2


def test_default_space_has_per_stage_hybrids_and_a_sweepable_size(space):
    genomes = [g.compact() for g in space.valid_genomes()]
    assert 5_000 <= len(genomes) <= 30_000  # `hrnas space` counts every genome in seconds
    assert len(set(genomes)) == len(genomes) == space.size()  # every sample is valid and a different network
    assert PerStage(("shuffle", "weighting", "weighting")) in space.choices["block"]
    assert any(isinstance(v, PerStage) for v in space.choices["cross"])


def test_weighting_only_genes_are_conditional(space):
    params = {"gene.block": "shuffle", "gene.cross": "dcm", "gene.kernels": "4,4,2,1"}
    genome = space.genome(params)
    for name, off in WEIGHTING_ONLY.items():
        assert genome.genes[name] == off
    ratio_off = space.genome({"gene.block": "weighting", "gene.cross": "none", "gene.cross_ratio": "4"})
    assert ratio_off.genes["cross_ratio"] == space.base.genes["cross_ratio"]  # inactive: the base's value
    shuffle_samples = [p for p in space.samples() if p["gene.block"] == "shuffle"]
    assert shuffle_samples and all("gene.cross" not in p and "gene.cross_ratio" not in p for p in shuffle_samples)
    genomes = {space.genome(p).compact() for p in space.samples()}
    assert len(genomes) == space.size()  # no two samples are the same network


def test_size_counts_samples(space):
    assert space.size() == sum(1 for _ in space.samples())


@pytest.mark.parametrize("value", ["dcm", "40", "4,4,2,1", "2,4,2"])
def test_encode_decode_round_trip(value):
    name = {"dcm": "cross", "40": "width", "4,4,2,1": "kernels", "2,4,2": "modules"}[value]
    assert encode(decode(name, value)) == value


def test_cheapest_candidates_contain_the_cheapest_naive_net(space):
    candidates = [g.compact() for g in space.cheapest_candidates()]
    assert len(candidates) < space.size() / 10
    cheapest_naive = space.genome({"gene.block": "shuffle", "gene.width": "30", "gene.modules": "2,4,2"})
    assert cheapest_naive.compact() in candidates


def write(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("genes: {colour: [red]}", "unknown gene 'colour'"),
        ("genes: {cross: [crw, attention]}", "gene cross: value 'attention' is not valid"),
        ("genes: {width: [40, 41.5]}", "gene width: value 41.5"),
        ("genes: {width: []}", "non-empty list"),
        ("genes: {width: 40}", "non-empty list"),
        ("base: resnet-50\ngenes: {width: [40]}", "base"),
        ("genes: [width]", "expected a mapping"),
        ("genes: {width: [40]}\nbudget: 1", "unknown key"),
        ("genes: {width: [40]\n", "not valid YAML"),
    ],
)
def test_bad_space_files_name_the_problem(tmp_path, text, message):
    with pytest.raises(SpaceError, match=message):
        SearchSpace.from_file(write(tmp_path, text))


def test_missing_space_file(tmp_path):
    with pytest.raises(SpaceError, match="does not exist"):
        SearchSpace.from_file(tmp_path / "nope.yaml")


def test_space_with_no_valid_combination_is_refused(tmp_path):
    # Odd widths cannot be split in half by shuffle or weighting blocks: nothing is buildable.
    with pytest.raises(SpaceError, match="no combination"):
        SearchSpace.from_file(write(tmp_path, "genes: {width: [31, 33], block: [shuffle, weighting]}"))


def test_invalid_combination_is_a_genome_error(tmp_path):
    space = SearchSpace.from_file(write(tmp_path, "genes: {width: [30, 40], dsc_groups: [1, 4]}"))
    with pytest.raises(GenomeError, match="dsc_groups"):
        space.genome({"gene.width": "30", "gene.dsc_groups": "4"})  # 15 channels in 4 groups
