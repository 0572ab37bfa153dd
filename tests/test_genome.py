"""Genome validation, round trips, presets, gene switching."""

import json

import pytest

from search_space.genes import GENES
from search_space.genome import Genome, GenomeError, parse_gene_override
from search_space.presets import PRESET_DIR, PRESETS, load_architecture, load_preset

EXPECTED_PRESETS = {
    "hrnet-w32",
    "naive-litehrnet-18",
    "wider-naive-litehrnet-18",
    "litehrnet-18",
    "litehrnet-30",
    "ditehrnet-18",
    "ditehrnet-30",
}


def test_presets_are_the_published_models_and_plain_yaml():
    assert set(PRESETS) == EXPECTED_PRESETS
    for name in PRESETS:
        genome = load_preset(name)
        # a preset file holds every gene and nothing else
        assert set(Genome.from_file(PRESET_DIR / f"{name}.yaml").genes) == set(GENES)
        assert genome == Genome.from_yaml((PRESET_DIR / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED_PRESETS))
def test_round_trips(name, tmp_path):
    genome = load_preset(name)
    assert Genome.from_yaml(genome.to_yaml()) == genome
    assert Genome.from_dict(json.loads(genome.to_json())) == genome
    assert Genome.from_compact(genome.compact()) == genome
    assert "\n" not in genome.compact()
    path = tmp_path / "g.json"
    path.write_text(genome.to_json())
    assert load_architecture(str(path)) == genome
    assert load_architecture(genome.compact()) == genome


def test_defaults_fill_missing_genes():
    assert Genome.from_dict({}) == load_preset("litehrnet-18")


@pytest.mark.parametrize(
    "genes,gene,fragment",
    [
        ({"colour": "red"}, "colour", "unknown gene"),
        ({"block": "dense"}, "block", "choose one of"),
        ({"stem": 3}, "stem", "choose one of"),
        ({"width": "wide"}, "width", "integer"),
        ({"width": 2}, "width", "4..512"),
        ({"width": True}, "width", "integer"),
        ({"modules": 3}, "modules", "list"),
        ({"modules": [2, 4, 2, 1]}, "modules", "list of 1-3"),
        ({"modules": [2, 0, 2]}, "modules", "each stage"),
        ({"blocks": [2, 2]}, "blocks", "single integer"),
        ({"kernels": [4, 4, 2]}, "kernels", "3 values but the network has 4 branches"),
        ({"dsc_groups": [1, 1, 2, 4, 4]}, "dsc_groups", "5 values"),
        ({"dsc_groups": 5}, "dsc_groups", "1..4"),
        ({"dsc_groups": 3}, "dsc_groups", "not divisible by 3 groups"),
        ({"width": 42, "dsc_groups": [2, 1, 1, 1]}, "dsc_groups", "branch 0 has 21 channels"),
        ({"block": "residual"}, "cross", "only applies to block=weighting"),
        ({"block": "shuffle", "cross": "none"}, "within", "only applies to block=weighting"),
        ({"block": "shuffle", "cross": "none", "within": "none", "kernels": 2}, "kernels", "only applies"),
        ({"block": "shuffle", "cross": "none", "within": "none", "width": 31}, "width", "even width"),
        ({"cross_ratio": 64, "width": 8}, "cross_ratio", "to none"),
        ({"within_ratio": [4, 4, 100, 4]}, "within_ratio", "must be in"),
        ({"within_ratio": 32, "width": 8}, "within_ratio", "to none"),
        ({"width": 12, "dsc_groups": 4}, "dsc_groups", "branch 0 has 6 channels"),
        ({"width": 16, "dsc_groups": 4, "kernels": 4}, "kernels", ">= 4 channels"),
    ],
)
def test_validation_errors_name_gene_and_value(genes, gene, fragment):
    with pytest.raises(GenomeError) as info:
        Genome.from_dict(genes)
    assert info.value.gene == gene
    message = str(info.value)
    assert message.startswith(f"gene {gene}=")
    assert fragment in message


def test_gene_override_parsing():
    assert parse_gene_override("kernels=[4,4,2,1]") == ("kernels", [4, 4, 2, 1])
    assert parse_gene_override("block=shuffle") == ("block", "shuffle")
    assert parse_gene_override("width=32") == ("width", 32)
    with pytest.raises(GenomeError, match="unknown gene"):
        parse_gene_override("colour=red")
    with pytest.raises(GenomeError, match="NAME=VALUE"):
        parse_gene_override("kernels")


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(ValueError, match="neither a preset"):
        load_architecture("litehrnet-99")
    with pytest.raises(FileNotFoundError):
        load_architecture("missing.yaml")


def test_bad_yaml_types_are_rejected():
    with pytest.raises(GenomeError, match="mapping"):
        Genome.from_yaml("- just\n- a list\n")


def single_gene_switches():
    """Every preset with every single gene switched to every other allowed value (ints: a few)."""
    ints = {
        "width": [8, 30, 32, 48],
        "blocks": [1, 3],
        "cross_ratio": [4, 16],
        "within_ratio": [2, 8, [4, 4, 8, 8]],
        "dsc_groups": [1, 2, 4, [1, 1, 2, 4]],
        "kernels": [1, 2, 4, [4, 4, 2, 1]],
        "modules": [[1], [2, 2], [1, 1, 1]],
    }
    for preset in sorted(EXPECTED_PRESETS):
        for name, gene in GENES.items():
            values = list(gene.choices) if gene.kind == "choice" else ints[name]
            for value in values:
                yield preset, name, value


@pytest.mark.parametrize("preset,gene,value", list(single_gene_switches()))
def test_switching_one_gene_builds_or_names_the_gene(preset, gene, value):
    """A switched preset either validates (and then builds, checked in test_models) or blames a gene."""
    try:
        genome = load_preset(preset).with_genes({gene: value})
    except GenomeError as exc:
        assert exc.gene in GENES
        assert str(exc).startswith(f"gene {exc.gene}=")
        return
    assert genome.genes[gene] == value
