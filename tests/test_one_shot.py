"""The one-shot search on real components: a supernet trained for the search (a local Ray scores genomes with it,
Optuna's NSGA-II proposes them, MLflow on SQLite records them), reused by a second search, and bad inputs.

The tiny space of tests/test_search.py (widths 8/12/16 x shuffle/weighting, one module per stage, 64x64 on
coco-mini): its supernet trains for one epoch of 2 steps at batch 4, and a genome scores in about a second.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from analysis.pareto import Point, pareto_front
from tests.scripts import run_script
from tests.test_search import (
    BUDGET_RAW,
    MINI_DATA,
    ROOT,
    children,
    environment,
    search_command,
    sigkill_after_a_finished_trial,
    space_file,
)

assert space_file  # the fixture, imported for these tests
ONE_SHOT = ["--strategy", "one-shot", "--supernet-epochs", "1", "--supernet-steps", "2", "--batch", "4"]
ONE_SHOT += ["--calibration", "8"]


def run_one_shot(tmp_path, space_file, *extra, env=None):
    return subprocess.run(
        search_command(tmp_path, space_file, *ONE_SHOT, *extra),
        cwd=ROOT, env=env or environment(tmp_path), capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def summary_of(done) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_one_shot_search_end_to_end_then_a_second_budget_reuses_the_supernet(tmp_path, space_file, ray_head):
    done = run_one_shot(tmp_path, space_file, "--evaluations", "4", env=environment(tmp_path, ray_head))
    summary = summary_of(done)
    assert summary["strategy"] == "one-shot" and summary["supernet_reused"] is False
    folder = Path(summary["supernet"])
    assert folder.parent == tmp_path / "runs" / "supernets" and (folder / "supernet.pt").is_file()
    assert "training the supernet" in done.stderr
    client, runs = children(tmp_path, summary)
    # The budget admits the four width-8/12 genomes; each is scored once, none over budget.
    assert len(runs) == 4 and len({r.data.tags["genome"] for r in runs}) == 4
    for r in runs:
        assert r.info.status == "FINISHED"
        assert r.data.tags["strategy"] == "one-shot" and r.data.tags["inherited"] == "true"
        assert r.data.metrics["flops"] <= BUDGET_RAW
        assert {"ap", "ap50", "ar", "score_seconds", "params"} <= set(r.data.metrics)
    # The pareto tags are the front recomputed from MLflow.
    points = [Point(r.info.run_id, r.data.metrics["ap"], r.data.metrics["flops"]) for r in runs]
    expected = {p.key for p in pareto_front(points)}
    assert {r.info.run_id for r in runs if r.data.tags["pareto"] == "true"} == expected
    assert {p["run_id"] for p in summary["pareto"]} == expected
    # The parent names the supernet and its MLflow run, which holds the supernet's training.
    parent = client.get_run(summary["parent_run_id"])
    assert parent.data.tags["strategy"] == "one-shot" and parent.data.params["sampler"] == "nsga2"
    assert parent.data.params["supernet"] == str(folder)
    supernet_run = client.get_run(parent.data.tags["supernet_run_id"])
    assert supernet_run.data.tags["kind"] == "supernet" and supernet_run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(supernet_run.info.run_id, "loss")] == [1]
    trained = (folder / "supernet.pt").stat().st_mtime_ns

    # Another budget, another experiment: the same space and data reuse the supernet without training it again;
    # this search also confirms its front (--confirm 2, fine-tuned from the inherited weights).
    again = subprocess.run(
        [*search_command(tmp_path, space_file, *ONE_SHOT, "--evaluations", "2", *CONFIRM), "--budget", "35MFLOPs",
         "--experiment", "t2"],
        cwd=ROOT, env=environment(tmp_path, ray_head), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    second = summary_of(again)
    assert second["supernet"] == str(folder) and second["supernet_reused"] is True
    assert "reusing the supernet" in again.stderr and "training the supernet" not in again.stderr
    assert (folder / "supernet.pt").stat().st_mtime_ns == trained
    _, runs = children(tmp_path, second)
    scored = [r for r in runs if r.data.tags.get("confirm") != "true"]
    assert len(scored) == 2 and all(r.data.metrics["flops"] <= 35 * 2**20 for r in scored)
    assert client.get_run(second["parent_run_id"]).data.tags["supernet_run_id"] == supernet_run.info.run_id
    check_confirmations(again, second, runs, tmp_path / "runs" / "t2" / "report" / "pareto.csv")


CONFIRM = ["--confirm", "2", "--confirm-from", "inherited", "--confirm-epochs", "1", "--confirm-steps", "2"]


def check_confirmations(done, summary: dict, runs: list, report: Path) -> None:
    """--confirm 2: two front members (its cheapest and its most accurate) trained as Ray trials; each run holds
    both APs and names the scored run it confirms, which shows its confirmed AP."""
    scored = [r for r in runs if r.data.tags.get("confirm") != "true"]
    confirmed = [r for r in runs if r.data.tags.get("confirm") == "true"]
    front = sorted((r for r in scored if r.data.tags["pareto"] == "true"), key=lambda r: r.data.metrics["flops"])
    expected = [front[0], front[-1]] if len(front) > 1 else front
    assert summary["front_size"] == len(front) and summary["confirmed"] == len(expected) == len(confirmed)
    assert sorted(r.data.tags["confirms"] for r in confirmed) == sorted(r.info.run_id for r in expected)
    by_id = {r.info.run_id: r for r in scored}
    for run in confirmed:
        assert run.info.status == "FINISHED" and run.data.tags["inherited"] == "false"
        assert run.data.tags["confirm_from"] == "inherited" and "pareto" not in run.data.tags
        member = by_id[run.data.tags["confirms"]]
        assert run.data.tags["genome"] == member.data.tags["genome"]
        assert run.data.metrics["inherited_ap"] == member.data.metrics["ap"]
        assert member.data.metrics["confirmed_ap"] == run.data.metrics["ap"]
        assert run.data.metrics["flops"] == member.data.metrics["flops"]
    shown = {p["run_id"]: p["confirmed_ap"] for p in summary["pareto"]}
    assert {k for k, v in shown.items() if v is not None} == {r.info.run_id for r in expected}
    assert "confirmed_ap" in done.stdout and "confirming" in done.stderr
    assert report.read_text().splitlines()[0].split(",")[:4] == ["trial_id", "preset", "ap", "confirmed_ap"]


def test_sigkilled_one_shot_search_resumes_without_duplicate_runs(tmp_path, space_file, ray_head):
    """On the test process's Ray head: the SIGKILL of a driver with its private local Ray is test_search's."""
    env = environment(tmp_path, ray_head)
    # width 8-16 under a generous budget: six genomes, so that the kill lands mid-search
    command = [*search_command(tmp_path, space_file, *ONE_SHOT, "--evaluations", "6"), "--budget", "1GFLOPs"]
    before = sigkill_after_a_finished_trial(tmp_path, command, env)
    done = subprocess.run([*command, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    summary = summary_of(done)
    client, runs = children(tmp_path, summary)
    trial_ids = [r.data.tags["trial_id"] for r in runs]
    assert len(trial_ids) == len(set(trial_ids)) == 6 and len({r.data.tags["genome"] for r in runs}) == 6
    assert all(r.info.status == "FINISHED" and r.data.tags["inherited"] == "true" for r in runs)
    for trial_id, run_id in before.items():
        assert trial_id in trial_ids and client.get_run(run_id).info.status == "FINISHED"


def test_one_shot_table_scores_rows_in_the_space_and_trains_the_others(tmp_path, space_file, ray_head):
    """`ablate.py --strategy one-shot`: the tiny table's first row is the tiny space's base genome (scored with the
    supernet), its second switches off cross-resolution weighting, which the space does not hold (trained)."""
    from tests.test_ablation import TINY

    table = tmp_path / "tiny-table.yaml"
    table.write_text(TINY)
    command = [
        sys.executable, "experiments/ablate.py", "--table", str(table), "--data", MINI_DATA, "--input", "64x64",
        "--storage", str(tmp_path / "runs"), "--json", "--space", str(space_file), *ONE_SHOT,
    ]  # fmt: skip
    env = environment(tmp_path, ray_head)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    summary = summary_of(done)
    rows = {r["row"]: r for r in summary["rows"]}
    assert rows["small"]["signal"] == "inherited" and rows["small without cross"]["signal"] == "trained"
    assert all(isinstance(r["ap"], float) and r["status"] == "FINISHED" for r in rows.values())
    assert (
        "rows marked inherited" in summary["recipe"] and "rows marked trained: proxy AP: 1 epochs" in summary["recipe"]
    )
    assert "signal" in done.stdout.splitlines()[2] and "inherited" in done.stdout
    client = MlflowClient(summary["tracking_uri"])
    parent = client.get_run(summary["parent_run_id"])
    assert parent.data.tags["strategy"] == "one-shot" and "supernet_run_id" in parent.data.tags
    runs = {r.data.tags["row"]: r for r in client.search_runs(
        [summary["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )}  # fmt: skip
    scored, trained = runs["small"], runs["small without cross"]
    assert scored.data.tags["signal"] == "inherited" and "score_seconds" in scored.data.metrics
    assert trained.data.tags["signal"] == "trained" and "train_seconds" in trained.data.metrics
    assert "score_seconds" not in trained.data.metrics
    csv = (tmp_path / "runs" / "ablations" / "tiny-table" / "report" / "tiny.csv").read_text()
    assert "signal" in csv.splitlines()[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--confirm", "2"], "a trials search's front is already trained"),
        (["--strategy", "one-shot", "--confirm", "-1"], "--confirm -1: give the number"),
        (["--strategy", "one-shot", "--confirm", "1", "--confirm-epochs", "0"], "--confirm-epochs must be at least 1"),
        (["--supernet", "nowhere"], "only one-shot scoring uses a supernet"),
        (["--strategy", "one-shot", "--supernet", "nowhere"], "no supernet.pt there"),
        (["--strategy", "one-shot", "--scheduler", "asha"], "no epochs to stop early at"),
        (["--strategy", "one-shot", "--evaluations", "0"], "--evaluations must be at least 1"),
        (["--strategy", "one-shot", "--calibration", "0"], "--calibration must be at least 1"),
    ],
)
def test_bad_one_shot_input_fails_before_anything_starts(tmp_path, capsys, space_file, extra, message):
    code, _, err = run_script(
        capsys, "search", "--budget", "40MFLOPs", "--space", str(space_file), "--data", MINI_DATA,
        "--storage", str(tmp_path / "runs"), *extra,
    )  # fmt: skip
    assert code == 2 and message in err
    assert not (tmp_path / "runs" / "hrnas-search").exists()


def test_a_supernet_of_another_space_or_data_is_refused(tmp_path, capsys, space_file):
    """A supernet trained on the tiny space: a search of the default space, or on other data, must refuse it."""
    from tests.test_supernet_training import CLI

    out = tmp_path / "sn"
    code, _, err = run_script(
        capsys, "supernet", "train", "--space", str(space_file), "--epochs", "1", "--out", str(out),
        "--storage", str(tmp_path / "runs"), "--calibration", "4", *CLI,
    )  # fmt: skip
    assert code == 0, err[-2000:]
    base = ["--budget", "40MFLOPs", "--strategy", "one-shot", "--supernet", str(out), "--storage", str(tmp_path)]
    code, _, err = run_script(capsys, "search", *base, "--data", MINI_DATA)
    assert code == 2 and "was trained on space 'tiny', not on this search's space 'default'" in err
    code, _, err = run_script(capsys, "search", *base, "--space", str(space_file))
    assert code == 2 and "this search scores on --data synthetic" in err


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_the_supernet_trains_in_a_ray_task_that_resolves_its_own_device(tmp_path, space_file, monkeypatch):
    """The search's supernet trains in a Ray task holding the recipe's CPUs (and a whole GPU on CUDA), never in the
    driver: the driver's own train_supernet is a trap here, and the task reports its process and device."""
    from dataclasses import replace

    import nas.one_shot as one_shot
    from nas.options import TrialResources
    from nas.ray_common import in_task, ray_instance
    from pose.train import Recipe
    from supernet.sampling import candidates
    from supernet.training import CHECKPOINT, SpaceSource, SupernetRecipe

    def trap(*args, **kwargs):
        raise AssertionError("the supernet trained in the driver")

    monkeypatch.setattr(one_shot, "train_supernet", trap)
    monkeypatch.setenv("HRNAS_CACHE", str(tmp_path / "cache"))
    recipe = replace(Recipe(), input_hw=(64, 64), epochs=1, max_steps=2, batch=4, threads=1)
    folder = tmp_path / "supernet"
    pool = candidates(SpaceSource.from_file(space_file).space)
    task = one_shot.SupernetTask(
        Path(space_file).read_text(), MINI_DATA, recipe, SupernetRecipe(calibration=8, budget=None), folder, "cpu",
        "auto", pool,
    )  # fmt: skip
    resources = one_shot.task_resources(TrialResources(1, 0.0, "cpu", "auto"), recipe)
    assert resources == {"num_cpus": 1, "num_gpus": 0}
    assert one_shot.task_resources(TrialResources(1, 0.5, "cuda", "auto"), recipe)["num_gpus"] == 1  # a whole GPU
    assert one_shot.task_resources(TrialResources(1, 0.0, "cpu", "auto"), replace(recipe, threads=4), 2.0) == {
        "num_cpus": 2.0,
        "num_gpus": 0,
    }  # never more CPUs than a node has
    with ray_instance(tmp_path, None, verbose=False):  # a private Ray (a shared head needs its token at import)
        result = in_task(one_shot.train_task, task, resources=resources)
    assert result["where"]["pid"] != os.getpid() and result["where"]["device"] == "cpu"
    assert len(result["history"]) == 1 and (folder / CHECKPOINT).is_file()
