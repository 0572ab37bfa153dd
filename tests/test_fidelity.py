"""`hrnas fidelity`: rank metrics against a truth file, checked against scipy on the JSONL itself; the seed
ceiling, within-FLOPs-bin tau, intervals, the plot, and bad input as one line."""

import json
import random

import numpy as np
import pytest
from scipy import stats

from fidelity.metrics import flops_edges, top_overlap, within_bins
from tests.scripts import run_script

RECIPE = {"name": "truth-2ep", "input_hw": [64, 64], "epochs": 2, "batch": 8, "lr": 0.01}


def truth_lines(genomes: int = 12, seeded: int = 8, recipe: dict = RECIPE) -> list[dict]:
    rng = random.Random(0)
    lines = []
    for g in range(genomes):
        flops = 100 + 10 * g
        for seed in range(2 if g < seeded else 1):
            ap = 0.3 + 0.01 * g + rng.gauss(0, 0.01)
            for epoch in (1, 2):
                lines.append({"genome": f"width={g}", "preset": None, "seed": seed, "epoch": epoch, "epochs": 2,
                              "ap": ap / (3 - epoch), "loss": 1.0, "flops": flops, "params": 1000 - g,
                              "recipe": recipe, "kind": "truth", "code": "x", "wall_seconds": 1.0,
                              "cpu_seconds": 1.0})  # fmt: skip
    return lines


def write(path, lines):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def signal_lines(truth: list[dict]) -> list[dict]:
    rng = random.Random(1)
    finals = [d for d in truth if d["epoch"] == 2]
    return [{"signal": "synflow", "genome": d["genome"], "seed": d["seed"], "score": d["ap"] + rng.gauss(0, 0.03),
             "cpu_seconds": 2.0} for d in finals]  # fmt: skip


def test_fidelity_agrees_with_scipy_on_the_jsonl(tmp_path, capsys):
    truth = write(tmp_path / "truth.jsonl", truth_lines())
    signals = write(tmp_path / "signals.jsonl", signal_lines(truth_lines()))
    code, out, err = run_script(capsys, "fidelity", "--truth", str(truth), "--json")
    assert code == 0, err
    rows = json.loads(out.strip().splitlines()[-1])
    by = {r["signal"]: r for r in rows if "signal" in r}
    assert set(by) == {"flops", "params", "synflow"}
    assert not any("truth_vs_published_coco" in r for r in rows)  # no preset in this truth
    # recomputed from the files: truth = final-epoch AP averaged over seeds; a signal's score averaged likewise
    finals, scores = {}, {}
    for d in map(json.loads, truth.read_text().splitlines()):
        if d["epoch"] == d["epochs"]:
            finals.setdefault(d["genome"], []).append(d["ap"])
    for d in map(json.loads, signals.read_text().splitlines()):
        scores.setdefault(d["genome"], []).append(d["score"])
    genomes = sorted(finals)
    t = [np.mean(finals[g]) for g in genomes]
    s = [np.mean(scores[g]) for g in genomes]
    assert by["synflow"]["kendall_tau"] == pytest.approx(stats.kendalltau(t, s).statistic, abs=0.01)
    assert by["synflow"]["spearman"] == pytest.approx(stats.spearmanr(t, s).statistic, abs=0.01)
    low, high = by["synflow"]["kendall_tau_ci"]
    assert low <= by["synflow"]["kendall_tau"] <= high and high - low > 0.01
    assert by["flops"]["kendall_tau"] > 0.8 and by["params"]["kendall_tau"] < -0.8  # params fall as AP rises here
    assert by["synflow"]["cpu_seconds_per_genome"] == pytest.approx(4.0 * 8 / 12 + 2.0 * 4 / 12)  # seeds summed
    ceiling = rows[-1]["seed_ceiling"]
    a = [d["ap"] for d in map(json.loads, truth.read_text().splitlines()) if d["epoch"] == 2 and d["seed"] == 0][:8]
    b = [d["ap"] for d in map(json.loads, truth.read_text().splitlines()) if d["epoch"] == 2 and d["seed"] == 1]
    assert ceiling["n"] == 8 and ceiling["kendall_tau"] == pytest.approx(stats.kendalltau(a, b).statistic, abs=0.01)
    # the FLOPs quintiles of all 12 genomes (flops 100 + 10 g) put the 8 seeded ones in bins {0,1,2}, {3,4}, {5,6}
    # and {7} (no pair): the pair-weighted mean of the first three bins' taus
    bins = ((0, 3), (3, 5), (5, 7))
    taus = [(stats.kendalltau(a[i:j], b[i:j]).statistic, (j - i) * (j - i - 1) / 2) for i, j in bins]
    within = sum(t * w for t, w in taus) / sum(w for _, w in taus)
    assert ceiling["within_flops_tau"] == pytest.approx(within, abs=1e-9)
    low, high = ceiling["within_flops_tau_ci"]
    assert low <= ceiling["within_flops_tau"] <= high
    assert "seed ceiling" in out and (tmp_path / "fidelity.png").stat().st_size > 5000
    for key in ("n", "kendall_tau", "kendall_tau_ci", "spearman", "within_flops_tau", "within_flops_tau_ci",
                "cpu_seconds_per_genome", "top10_overlap", "regret"):  # fmt: skip
        assert key in by["synflow"]


def test_a_one_shot_signal_shows_its_supernet_training_as_a_cost_paid_once(tmp_path, capsys):
    truth = write(tmp_path / "truth.jsonl", truth_lines())
    shots = [{**d, "signal": "one-shot", "cpu_seconds": 9.0 + 7200 / 150, "one_off_cpu_seconds": 7200.0}
             for d in signal_lines(truth_lines()) if d["seed"] == 0]  # fmt: skip
    write(tmp_path / "signals.jsonl", signal_lines(truth_lines()) + shots)
    code, out, err = run_script(capsys, "fidelity", "--truth", str(truth))
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("one-shot "))
    assert row.split()[-2:] == ["57.0", "2.00"]  # CPU-s per genome (its share included), then CPU-hours once
    assert next(line for line in out.splitlines() if line.startswith("synflow ")).split()[-1] == "-"
    code, out, err = run_script(capsys, "fidelity", "--truth", str(truth), "--json")
    by = {r["signal"]: r for r in json.loads(out.strip().splitlines()[-1]) if "signal" in r}
    assert by["one-shot"]["one_off_cpu_seconds"] == 7200.0 and by["synflow"]["one_off_cpu_seconds"] == 0.0


def test_within_bin_tau_is_the_pair_weighted_mean_over_flops_quintiles():
    flops = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    truth = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    score = [2, 1, 4, 3, 6, 5, 8, 7, 10, 9]  # right across bins, wrong inside every bin of two
    edges = flops_edges(flops)
    assert within_bins(truth, score, flops, edges) == pytest.approx(-1.0)
    assert stats.kendalltau(truth, score).statistic > 0.7  # what counting gets credit for overall
    assert top_overlap(truth, score) == 0.0 and top_overlap(truth, truth) == 1.0


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (lambda p: None, ["--signal", "flops"], "does not exist"),
        (lambda p: write(p / "truth.jsonl", truth_lines()), ["--signal", "zen-score"], "unknown signal 'zen-score'"),
        (lambda p: write(p / "truth.jsonl", truth_lines(genomes=4, seeded=2)), [], "needs at least 5"),
        (
            lambda p: write(p / "truth.jsonl", truth_lines() + truth_lines(recipe={**RECIPE, "name": "other"})),
            [],
            "mixes truth recipes",
        ),
        (lambda p: write(p / "truth.jsonl", truth_lines()), ["--signal", "synflow"], "signals.jsonl does not exist"),
    ],
)
def test_bad_fidelity_input_is_one_line(tmp_path, capsys, make, args, message):
    make(tmp_path)
    code, out, err = run_script(capsys, "fidelity", "--truth", str(tmp_path / "truth.jsonl"), *args)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "fidelity.png").exists()


def test_a_search_names_its_signal_and_states_its_measured_fidelity(tmp_path):
    from fidelity.measured import statement, write_measured
    from fidelity.report import build
    from nas.options import SearchArgs
    from nas.signal_fidelity import is_default_space, search_signal

    def signal_of(**args):
        return search_signal(SearchArgs(budget="0.5G", storage=str(tmp_path), **args).parse())

    assert signal_of() == "trials-1" and signal_of(epochs=4) == "trials-4"
    assert signal_of(input="64x64") is None  # a recipe no ground truth measures
    assert signal_of(strategy="one-shot") == "one-shot" and signal_of(strategy="one-shot", supernet_epochs=6) == (
        "one-shot-6ep"
    )
    assert is_default_space(SearchArgs(budget="0.5G", storage=str(tmp_path)).parse().space)

    truth = write(tmp_path / "truth.jsonl", truth_lines())
    write(tmp_path / "signals.jsonl", [{**d, "signal": "trials-1"} for d in signal_lines(truth_lines())])
    measured = write_measured(build(truth, None, None), "default", "synthetic", tmp_path / "measured.json")
    assert str(tmp_path) not in measured.read_text()
    text, tau = statement("trials-1", True, "synthetic", measured)
    assert tau is not None and f"Kendall tau {tau:+.2f} [" in text and "12 genomes of the default space" in text
    assert "FLOPs alone +0.88" in text and "seed ceiling" in text
    assert statement("one-shot", True, "synthetic", measured)[1] is None  # measured table, signal not in it
    assert "unmeasured for this space" in statement("trials-1", False, "synthetic", measured)[0]
    assert "unmeasured for this data" in statement("trials-1", True, "/data/coco", measured)[0]
    assert "no ground truth" in statement("trials-1", True, "synthetic", tmp_path / "none.json")[0]


def test_the_truth_is_checked_against_the_published_coco_ap_of_its_presets():
    from hrnas.commands.fidelity import published_check

    assert published_check({"litehrnet-18": 0.5}) is None
    ordered = {"naive-litehrnet-18": 0.1, "litehrnet-18": 0.2, "ditehrnet-18": 0.3, "litehrnet-30": 0.4}
    assert published_check(ordered) == {"presets": 4, "kendall_tau": pytest.approx(stats.kendalltau(
        [0.628, 0.648, 0.659, 0.672], [0.1, 0.2, 0.3, 0.4]).statistic)}  # fmt: skip
