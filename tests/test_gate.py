"""The budget gate on its own: exact complexity before training, the smallest-genome error, the disk cache."""

import json

import pytest

from nas.gate import BudgetGate, BudgetTooSmall, smallest_budget_text
from search_space.budget import parse_budget, parse_cost_budget
from search_space.complexity import genome_complexity
from search_space.presets import load_preset
from search_space.space import SearchSpace

LITE18_TORCHSTAT = 215202112  # tests/test_complexity.py pins this against the published 205.2M


def test_gate_compares_exact_flops_with_the_budget(tmp_path):
    gate = BudgetGate(parse_budget("205.2M"), cache_file=tmp_path / "c.json")
    assert gate.flops(load_preset("litehrnet-18")) == LITE18_TORCHSTAT
    # The paper's printed 205.2M is rounded: 205.2 x 2^20 = 215,167,795 raw is 34,317 short of Lite-HRNet-18.
    assert not gate.fits(load_preset("litehrnet-18"))
    assert not BudgetGate(parse_budget(f"{(LITE18_TORCHSTAT - 1) / 2**20}M")).fits(load_preset("litehrnet-18"))
    assert BudgetGate(parse_budget(f"{LITE18_TORCHSTAT / 2**20}M")).fits(load_preset("litehrnet-18"))


def test_costs_are_cached_on_disk(tmp_path):
    cache = tmp_path / "c.json"
    BudgetGate(parse_budget("1G"), cache_file=cache).cost(load_preset("naive-litehrnet-18"))
    entries = json.loads(cache.read_text())
    assert len(entries) == 1
    (key,) = entries
    entries[key]["flops"]["torchstat"] = 12345  # a second gate trusts the cache instead of recounting
    cache.write_text(json.dumps(entries))
    assert BudgetGate(parse_budget("1G"), cache_file=cache).flops(load_preset("naive-litehrnet-18")) == 12345


def test_other_conventions_are_counted_too(tmp_path):
    gate = BudgetGate(parse_budget("1G"), convention="conv-macs")
    genome = load_preset("ditehrnet-18")
    assert gate.flops(genome) == genome_complexity(genome).flops["conv-macs"]
    assert set(gate.cost(genome).metrics()) == {"params", "flops_torchstat", "flops_conv_macs", "flops_macs"}
    with pytest.raises(ValueError, match="unknown convention"):
        BudgetGate(parse_budget("1G"), convention="gmacs")


def test_budget_below_the_space_states_the_smallest_figure(tmp_path):
    space_file = tmp_path / "s.yaml"
    space_file.write_text("base: litehrnet-18\ngenes: {width: [30, 40], block: [shuffle, weighting]}")
    space = SearchSpace.from_file(space_file)
    smallest = min(BudgetGate(parse_budget("1G")).flops(g) for g in space.valid_genomes())
    with pytest.raises(BudgetTooSmall) as error:
        BudgetGate(parse_budget("10M")).check_space(space)
    message = str(error.value)
    assert f"{smallest:,} raw" in message and smallest_budget_text(smallest) in message
    admitted = BudgetGate(parse_budget(smallest_budget_text(smallest))).check_space(space)
    assert BudgetGate(parse_budget("1G")).flops(admitted) <= parse_budget(smallest_budget_text(smallest)).raw


def _copy_sources(root):
    import shutil

    from search_space.complexity import COMPLEXITY_SOURCES

    copies = []
    for source in COMPLEXITY_SOURCES:
        shutil.copytree(source, root / source.name, ignore=shutil.ignore_patterns("__pycache__"))
        copies.append(root / source.name)
    return tuple(copies)


def test_the_code_hash_changes_when_a_block_changes(tmp_path):
    from search_space.complexity import complexity_code_hash, source_hash

    copies = _copy_sources(tmp_path)
    assert source_hash(copies) == complexity_code_hash()  # the same bytes give the same hash
    layers = tmp_path / "blocks" / "layers.py"
    layers.write_text(layers.read_text().replace("padding=kernel_size // 2", "padding=kernel_size // 2 + 0"))
    assert source_hash(copies) != complexity_code_hash()


@pytest.mark.parametrize("edit", [False, True])
def test_an_edited_block_makes_cached_costs_unused(tmp_path, monkeypatch, edit):
    from search_space import complexity

    cache = tmp_path / "c.json"
    genome = load_preset("naive-litehrnet-18")
    BudgetGate(parse_budget("1G"), cache_file=cache).cost(genome)
    entries = json.loads(cache.read_text())
    ((key, entry),) = entries.items()
    entry["flops"]["torchstat"] = 12345  # a stale figure, as if the code had changed since it was counted
    cache.write_text(json.dumps(entries))

    copies = _copy_sources(tmp_path / "src")
    if edit:
        residual = tmp_path / "src" / "blocks" / "residual.py"
        residual.write_text(residual.read_text() + "\n# an edit\n")
    monkeypatch.setattr(complexity, "COMPLEXITY_SOURCES", copies)
    complexity.complexity_code_hash.cache_clear()
    try:
        flops = BudgetGate(parse_budget("1G"), cache_file=cache).flops(genome)
    finally:
        complexity.complexity_code_hash.cache_clear()
    assert flops == (genome_complexity(genome).flops["torchstat"] if edit else 12345)
    if edit:  # the stale entry was dropped when the new one was saved
        assert key not in json.loads(cache.read_text())


def test_a_new_rule_makes_cached_costs_unused(monkeypatch):
    from torch import nn

    from search_space import complexity

    before = complexity.counting_fingerprint()
    monkeypatch.setitem(complexity.CONVENTIONS["macs"].formulas, nn.Conv1d, lambda m, a, o: 0)
    assert complexity.counting_fingerprint() != before


def _table_where_width_8_is_slow(space):
    """A latency table (no timing: its part times are set) in which the parts only width-8 genomes use are slow, so
    the cheapest genomes by FLOPs are the slowest by predicted latency, as small kernels can make them on a CPU."""
    from search_space.latency import Setting
    from search_space.latency_table import LatencyTable, genome_parts

    setting = Setting(runtime="torch")
    keys = {g.compact(): {key for key, _, _ in genome_parts(g, setting)} for g in space.valid_genomes()}
    others = set().union(*(k for compact, k in keys.items() if "width=8 " not in compact))
    parts = {key: 1.0 if key in others else 10.0 for k in keys.values() for key in k}
    return LatencyTable(setting, {}, "", parts)


def test_a_latency_budget_looks_past_the_cheapest_genomes_by_flops(tmp_path):
    from tests.test_search import BASE, SPACE

    (tmp_path / "tiny-base.yaml").write_text(BASE)
    (tmp_path / "tiny.yaml").write_text(SPACE.format(base=tmp_path / "tiny-base.yaml"))
    space = SearchSpace.from_file(tmp_path / "tiny.yaml")
    table = _table_where_width_8_is_slow(space)
    predicted = {g.compact(): table.predict(g) for g in space.valid_genomes()}
    fastest = min(predicted.values())
    assert all(predicted[g.compact()] > fastest for g in space.cheapest_candidates())  # the case being tested
    admitted = BudgetGate(parse_cost_budget(f"{fastest}ms"), latency=table).check_space(space)
    assert predicted[admitted.compact()] == fastest
    with pytest.raises(BudgetTooSmall) as error:
        BudgetGate(parse_cost_budget(f"{fastest * 0.9}ms"), latency=table).check_space(space)
    message = str(error.value)
    assert f"the smallest of {len(predicted)} genomes predicted" in message and f"{fastest:.2f} ms" in message
