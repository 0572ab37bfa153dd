"""The budgeted searcher on its own (real Optuna, real complexity counting, no Ray trial): anchors first and cheapest
first, rejections told to Optuna as infeasible, an exhausted space, too many rejections, no deprecated Optuna API,
and the typed options and import graph of the search."""

import ast
import warnings
from pathlib import Path

import pytest
from ray.tune.search import Searcher

from nas.front import WIDTH, ap_digits, differing_genes, print_front, terminal_rows
from nas.gate import BudgetGate
from nas.options import SEARCH_FIDELITY, SearchArgs, SearchError
from nas.search_run import anchors_for
from nas.searcher import CONSTRAINT, BudgetedSearcher, TooManyRejections
from pose.train import Recipe
from search_space.budget import parse_budget
from search_space.presets import load_preset
from search_space.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
TINY_BASE = "stem: lite\nwidth: 8\nmodules: [1, 1, 1]\nblocks: 1\nblock: weighting\n"


def tiny_space(tmp_path, genes: str) -> SearchSpace:
    base = tmp_path / "base.yaml"
    base.write_text(TINY_BASE)
    path = tmp_path / "space.yaml"
    path.write_text(f"name: tiny\nbase: {base}\ngenes: {genes}\n")
    return SearchSpace.from_file(path)


def searcher(space, budget, tmp_path, anchors=(), **kwargs) -> BudgetedSearcher:
    gate = BudgetGate(parse_budget(budget), cache_file=tmp_path / "cache.json")
    return BudgetedSearcher(space, gate, list(anchors), 0, tmp_path / "rejected.jsonl", **kwargs)


def test_preset_anchors_are_the_first_trials_cheapest_first(tmp_path):
    space_file = tmp_path / "presets.yaml"
    space_file.write_text("name: presets\nbase: litehrnet-18\ngenes: {width: [30, 40], block: [shuffle, weighting]}")
    space = SearchSpace.from_file(space_file)
    gate = BudgetGate(parse_budget("1G"), cache_file=tmp_path / "cache.json")
    anchors, names, notes = anchors_for(space, gate)
    assert len(anchors) >= 2, notes  # naive-litehrnet-18, litehrnet-18, wider-naive-litehrnet-18 are in the space
    expected = sorted(names, key=lambda compact: gate.flops(space.genome(space.params_of(load_preset(names[compact])))))
    search = BudgetedSearcher(space, gate, anchors, 0, tmp_path / "rejected.jsonl")
    suggested = [search.suggest(f"t{i}")["genome"] for i in range(len(anchors))]
    assert suggested == expected
    flops = [gate.flops(load_preset(names[g])) for g in suggested]
    assert flops == sorted(flops) and len(set(flops)) == len(flops)


def test_over_budget_samples_are_infeasible_for_optuna_and_never_trials(tmp_path):
    space = tiny_space(tmp_path, "{width: [8, 12, 16], block: [shuffle, weighting]}")
    search = searcher(space, "40MFLOPs", tmp_path)
    configs = [search.suggest(f"t{i}") for i in range(4)]  # the four genomes of width 8 and 12 fit; 16 does not
    assert all(isinstance(c, dict) for c in configs)
    assert not any("width=16" in c["genome"] for c in configs) and len({c["genome"] for c in configs}) == 4
    trials = search.study.get_trials(deepcopy=False)
    rejected = [t for t in trials if "rejected" in t.user_attrs]
    assert rejected and all(t.constraints[CONSTRAINT] > 0 for t in rejected)
    assert len((tmp_path / "rejected.jsonl").read_text().splitlines()) == len(rejected)
    running = [t for t in trials if t.state.name == "RUNNING"]
    assert len(running) == 4 and all(t.constraints[CONSTRAINT] <= 0 for t in running)
    search.on_trial_complete("t0", {"ap": 0.5, "flops": configs[0]["flops"]})
    search.on_trial_complete("t1", error=True)
    states = {t.number: t.state.name for t in search.study.get_trials(deepcopy=False)}
    assert sorted(states.values()).count("COMPLETE") == len(rejected) + 1 and "FAIL" in states.values()


def test_an_exhausted_space_finishes_the_search(tmp_path, capsys):
    space = tiny_space(tmp_path, "{width: [8, 12]}")
    search = searcher(space, "1G", tmp_path, max_rejections=30)
    assert {search.suggest("a")["genome"], search.suggest("b")["genome"]} == {
        g.canonical_line() for g in space.valid_genomes()
    }
    assert search.suggest("c") == Searcher.FINISHED
    assert "looks exhausted" in capsys.readouterr().err
    assert search.suggest("d") == Searcher.FINISHED  # asked again (a resumed search): no new round of samples


def test_too_many_rejections_is_a_clear_input_error(tmp_path):
    space = tiny_space(tmp_path, "{width: [8, 12, 16], block: [shuffle, weighting]}")
    search = searcher(space, "1M", tmp_path, max_rejections=12)
    with pytest.raises(TooManyRejections, match="12 samples in a row were over budget") as error:
        search.suggest("a")
    assert isinstance(error.value, SearchError) and "raise the budget or narrow the space" in str(error.value)


def test_searcher_state_survives_save_and_restore(tmp_path):
    space = tiny_space(tmp_path, "{width: [8, 12, 16], block: [shuffle, weighting]}")
    first = searcher(space, "40MFLOPs", tmp_path)
    genome = first.suggest("a")["genome"]
    first.save(str(tmp_path / "state.pkl"))
    second = searcher(space, "40MFLOPs", tmp_path)
    second.restore(str(tmp_path / "state.pkl"))
    assert second.suggested == {genome} and second.live == first.live
    second.on_trial_complete("a", {"ap": 0.25, "flops": 1})
    assert [t.values for t in second.study.get_trials() if t.state.name == "COMPLETE" and t.values[0] > 0] == [
        [0.25, 1.0]
    ]
    assert second.suggest("b")["genome"] != genome


def test_the_searcher_uses_no_deprecated_optuna_api(tmp_path):
    space = tiny_space(tmp_path, "{width: [8, 12, 16], block: [shuffle, weighting]}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search = searcher(space, "40MFLOPs", tmp_path, startup_trials=2)
        for i in range(4):
            config = search.suggest(f"t{i}")
            search.on_trial_complete(f"t{i}", {"ap": 0.1 * i, "flops": config["flops"]})
    deprecated = [
        w for w in caught if issubclass(w.category, FutureWarning | DeprecationWarning) and "optuna" in w.filename
    ]
    assert not deprecated, [str(w.message) for w in deprecated]
    assert len(search.study.trials) > 4  # the TPE sampler (past its start-up trials) did run under the filter


def test_search_options_are_parsed_once_into_typed_values(tmp_path):
    options = SearchArgs(budget="0.5G", input="64x64", epochs=2, storage=str(tmp_path)).parse()
    assert options.budget.raw == 2**29 and options.recipe.input_hw == (64, 64) and options.recipe.epochs == 2
    assert options.recipe.batch == SEARCH_FIDELITY.batch and options.recipe.loss == Recipe().loss
    assert options.folder == tmp_path.resolve() / "hrnas-search"
    # The search's fidelity is train.py's recipe with fewer epochs, a smaller batch and a lower rate: nothing else.
    differs = {k for k, v in vars(SEARCH_FIDELITY).items() if getattr(Recipe(), k) != v}
    assert differs == {"epochs", "batch", "lr"}


def test_front_table_tells_points_apart_and_stays_narrow(capsys):
    assert ap_digits([0.0991, 0.0994]) == 4 and ap_digits([0.1, 0.2]) == 3
    genomes = ["width=8 block=shuffle kernels=3,3", "width=12 block=shuffle kernels=3,3"]
    assert differing_genes(genomes) == ["width=8", "width=12"]
    assert differing_genes(genomes[:1], base="width=8 block=weighting kernels=3,3") == ["block=shuffle"]
    rows = terminal_rows([{"ap": 0.0991, "genome": genomes[0]}, {"ap": 0.0994, "genome": genomes[1]}])
    assert [r["ap"] for r in rows] == ["0.0991", "0.0994"]
    long = " ".join(f"gene{i}=value{i}" for i in range(30))
    front = [
        {"trial_id": "a1b2c3d4", "preset": "wider-naive-litehrnet-18", "ap": 0.0991, "ar": 0.2, "flops_M": "300.1M",
         "params_M": "1.10M", "genome": f"width=8 {long}"},
        {"trial_id": "e5f6a7b8", "preset": None, "ap": 0.0994, "ar": 0.3, "flops_M": "310.1M", "params_M": "1.20M",
         "genome": f"width=12 {long.replace('value', 'other')}"},
    ]  # fmt: skip
    print_front(front)
    table = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in table) <= WIDTH and "0.0991" in table[2] and "width=8" in table[2]
    assert table[2].endswith("…")  # the genes that differ are more than fit: cut, the full genome is in the CSV


def test_nas_has_no_import_cycle():
    graph = {}
    for path in (ROOT / "nas").glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nas."):
                imported.add(node.module.split(".")[1])
        graph[path.stem] = imported

    def reaches(start: str, target: str, seen: set) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph.get(start, ()))

    assert graph["search_run"] and graph["tune_run"]  # the graph was read
    assert not [m for m in graph if reaches(m, m, set())]


def round_trip(what: str, sampler: str, restore):
    """restore() with a clear failure naming the path, the sampler and the Optuna release."""
    import optuna

    try:
        return restore()
    except Exception as exc:  # noqa: BLE001 - any failure here is the finding
        pytest.fail(f"--sampler {sampler}: the searcher does not survive {what} under Optuna {optuna.__version__}: "
                    f"{type(exc).__name__}: {exc}")  # fmt: skip


def one_finished_one_running(space, tmp_path, sampler) -> BudgetedSearcher:
    search = searcher(space, "40MFLOPs", tmp_path, sampler=sampler)
    done = search.suggest("done")
    search.on_trial_complete("done", {"ap": 0.25, "flops": done["flops"]})
    search.suggest("running")
    return search


def assert_carries_on(restored: BudgetedSearcher, original: BudgetedSearcher) -> None:
    """The restored searcher holds the same trials (numbers, states, values), tells the running one and proposes a
    genome not yet handed out."""

    def trials(s):
        return [(t.number, t.state.name, t.values, t.params) for t in s.study.get_trials(deepcopy=False)]

    assert trials(restored) == trials(original)
    assert restored.suggested == original.suggested and restored.live == original.live
    restored.on_trial_complete("running", {"ap": 0.5, "flops": 1})
    proposed = restored.suggest("next")
    assert isinstance(proposed, dict) and proposed["genome"] not in original.suggested


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_the_searcher_survives_the_tuner_state_ray_pickles(tmp_path, sampler):
    """Tune writes the searcher into tuner.pkl (ray.cloudpickle) when the Tuner is made, and reads it back on
    Tuner.restore: Optuna 5.1's NSGA-II sampler holds a thread lock and broke this path."""
    from ray import tune

    from nas.options import SAMPLERS

    assert set(SAMPLERS) - {"auto"} == {"tpe", "nsga2"}  # every sampler the CLI offers is parametrised here
    space = tiny_space(tmp_path, "{width: [8, 12, 16], block: [shuffle, weighting]}")
    search = one_finished_one_running(space, tmp_path, sampler)

    def trainable(config):
        return {"ap": 0.0}

    path = tmp_path / "tune"
    round_trip("Tune's tuner state (tuner.pkl)", sampler, lambda: tune.Tuner(
        trainable, tune_config=tune.TuneConfig(search_alg=search, num_samples=1),
        run_config=tune.RunConfig(name="exp", storage_path=str(path)),
    ))  # fmt: skip
    restored = round_trip("Tuner.restore", sampler, lambda: tune.Tuner.restore(str(path / "exp"), trainable))
    assert_carries_on(restored._local_tuner._tune_config.search_alg, search)


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_the_searcher_survives_its_own_save_and_restore(tmp_path, sampler):
    space = tiny_space(tmp_path, "{width: [8, 12, 16], block: [shuffle, weighting]}")
    search = one_finished_one_running(space, tmp_path, sampler)
    round_trip("its save()", sampler, lambda: search.save(str(tmp_path / "state.pkl")))
    restored = searcher(space, "40MFLOPs", tmp_path, sampler=sampler)
    round_trip("its restore()", sampler, lambda: restored.restore(str(tmp_path / "state.pkl")))
    assert_carries_on(restored, search)


def test_a_searcher_that_cannot_be_saved_is_one_line_naming_sampler_and_optuna(tmp_path):
    import threading

    import optuna

    from nas.searcher import SamplerNotPortable

    space = tiny_space(tmp_path, "{width: [8, 12]}")
    search = searcher(space, "1G", tmp_path, sampler="nsga2")
    search.check_portable(tmp_path)  # today's releases pass
    search.random = threading.Lock()  # what a future release's sampler might hold
    with pytest.raises(SamplerNotPortable) as error:
        search.check_portable(tmp_path)
    line = str(error.value)
    assert "\n" not in line and "--sampler nsga2" in line and f"Optuna {optuna.__version__}" in line
    assert "pip install 'optuna>=" in line
