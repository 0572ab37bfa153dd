"""experiments/report.py on a real MLflow SQLite store holding two searches with different budgets.

The runs are written with MlflowClient the way nas/tracking.py writes them (parent `kind=search` with
`budget_raw`; children with `ap`/`flops` metrics and `stopped_early` tags), so the report must find the searches,
keep failed, early-stopped and over-budget runs off the front, and compute the hypervolumes.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from analysis.pareto import Point, hypervolume, pareto_front
from tests.scripts import run_script

ROOT = Path(__file__).resolve().parents[1]
M = 2**20


def add_search(client, experiment_id, name, budget_raw, trials):
    parent = client.create_run(experiment_id, run_name=name, tags={"kind": "search"})
    pid = parent.info.run_id
    client.log_param(pid, "budget_raw", str(budget_raw))
    client.log_param(pid, "budget", f"{budget_raw // M}MFLOPs")
    client.log_param(pid, "convention", "torchstat")
    for i, (ap, flops, status, stopped) in enumerate(trials):
        run = client.create_run(
            experiment_id,
            tags={"mlflow.parentRunId": pid, "trial_id": f"{name}-{i}", "genome": f"g{i}", "stopped_early": stopped},
        )
        client.log_metric(run.info.run_id, "flops", flops)
        if ap is not None:
            client.log_metric(run.info.run_id, "ap", ap)
        client.set_terminated(run.info.run_id, status)
    client.set_terminated(pid, "FINISHED")
    return pid


@pytest.fixture()
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    eid = client.create_experiment("hrnas-search", artifact_location=(tmp_path / "art").as_uri())
    rng = np.random.default_rng(0)
    first = [(float(rng.uniform(0.1, 0.6)), float(rng.uniform(50, 300)) * M, "FINISHED", "false") for _ in range(8)]
    first += [
        (0.99, 60.0 * M, "FINISHED", "true"),  # stopped early by ASHA: truncated, never on the front
        (None, 70.0 * M, "FAILED", "false"),  # crashed
        (0.98, 400.0 * M, "FINISHED", "false"),  # over this search's budget
    ]
    second = [(float(rng.uniform(0.1, 0.6)), float(rng.uniform(50, 500)) * M, "FINISHED", "false") for _ in range(6)]
    a = add_search(client, eid, "search A", 300 * M, first)
    b = add_search(client, eid, "search B", 500 * M, second)
    return uri, client, (a, first, 300 * M), (b, second, 500 * M)


def run_report(capsys, *args):
    return run_script(capsys, "report", *args)


def report(capsys, uri, tmp_path, *extra):
    code, out, err = run_report(capsys, "--tracking-uri", uri, "--out", str(tmp_path / "out"), "--json", *extra)
    assert code == 0, err[-3000:]
    return out, json.loads(out.strip().splitlines()[-1])


def expected_front(trials, budget):
    ok = [Point(str(i), ap, f) for i, (ap, f, status, stopped) in enumerate(trials)
          if status == "FINISHED" and stopped == "false" and f <= budget]  # fmt: skip
    return ok, pareto_front(ok)


def test_report_two_searches_side_by_side(store, tmp_path, capsys):
    uri, client, (a, first, budget_a), (b, second, budget_b) = store
    out, summary = report(capsys, uri, tmp_path)
    assert [s["run_id"] for s in summary["searches"]] == [a, b]
    for s, trials, budget in ((summary["searches"][0], first, budget_a), (summary["searches"][1], second, budget_b)):
        _, front = expected_front(trials, budget)
        assert sorted(r["ap"] for r in s["pareto"]) == sorted(p.ap for p in front)
        assert all(r["ap"] < 0.9 for r in s["pareto"])  # the early-stopped and over-budget runs stay off
        for path in s["outputs"]:
            assert Path(path).is_file() and Path(path).stat().st_size > 0
    rows = {r["run_id"]: r for r in summary["comparison"]}
    for run_id, trials, budget in ((a, first, budget_a), (b, second, budget_b)):
        eligible, front = expected_front(trials, budget)
        assert rows[run_id]["hypervolume"] == pytest.approx(hypervolume(front, (0.0, budget)) / budget, rel=1e-9)
        assert rows[run_id]["hypervolume_common"] == pytest.approx(
            hypervolume(front, (0.0, budget_b)) / budget_b, rel=1e-9
        )
        assert rows[run_id]["eligible"] == len(eligible)
    assert "search A" in out and "search B" in out and "hypervolume" in out
    assert (tmp_path / "out" / a / "pareto.png").is_file() and (tmp_path / "out" / "hypervolume.md").is_file()


def test_report_one_run_by_id_and_last(store, tmp_path, capsys):
    uri, client, (a, *_), (b, *_) = store
    _, by_id = report(capsys, uri, tmp_path, "--run", a)
    assert [s["run_id"] for s in by_id["searches"]] == [a]
    _, last = report(capsys, uri, tmp_path, "--last", "1")
    assert [s["run_id"] for s in last["searches"]] == [b]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--experiment", "nope"], "no experiment 'nope'"),
        (["--last", "0"], "--last must be at least 1"),
    ],
)
def test_report_bad_input(store, capsys, args, message):
    uri, *_ = store
    code, _, err = run_report(capsys, "--tracking-uri", uri, *args)
    assert code == 2 and message in err


def test_report_without_a_store(tmp_path, capsys):
    code, _, err = run_report(capsys, "--storage", str(tmp_path / "none"))
    assert code == 2 and "no MLflow store" in err


def test_report_rejects_a_run_that_is_not_a_search(store, capsys):
    uri, client, *_ = store
    other = client.create_run(client.get_experiment_by_name("hrnas-search").experiment_id, tags={"kind": "ablation"})
    code, _, err = run_report(capsys, "--tracking-uri", uri, "--run", other.info.run_id)
    assert code == 2 and "is not a search" in err


def test_report_cli_end_to_end(store, tmp_path):
    """Once as a real command, as a user runs it."""
    uri, *_ = store
    done = subprocess.run([sys.executable, "experiments/report.py", "--tracking-uri", uri, "--out",
                           str(tmp_path / "cli"), "--json"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(json.loads(done.stdout.strip().splitlines()[-1])["comparison"]) == 2
