"""The search on real components: a local Ray, Optuna, MLflow on SQLite, COCOeval on the coco-mini images.

A tiny space keeps each search to about a minute: widths 8/12/16 x shuffle/weighting of a one-module-per-stage
Lite-HRNet, trained for one epoch at 64x64 on coco-mini; the budget (40 MFLOPs at 256x192) admits the width 8
and 12 genomes only, so the gate has something to reject.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from analysis.pareto import Point, pareto_front
from tests.scripts import run_script

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "data" / "coco-mini"
MINI_DATA = f"{MINI / 'test_coco.json'}:{MINI}"
BUDGET = "40MFLOPs"
BUDGET_RAW = 40 * 2**20
SPACE = """
name: tiny
base: {base}
genes:
  width: [8, 12, 16]
  block: [shuffle, weighting]
"""
BASE = """stem: lite
width: 8
modules: [1, 1, 1]
blocks: 1
block: weighting
"""


@pytest.fixture()
def space_file(tmp_path):
    base = tmp_path / "tiny-base.yaml"
    base.write_text(BASE)
    path = tmp_path / "tiny.yaml"
    path.write_text(SPACE.format(base=base))
    return path


def search_command(tmp_path, space_file, *extra):
    return [
        sys.executable, "experiments/search.py", "--budget", BUDGET, "--space", str(space_file),
        "--data", MINI_DATA, "--input", "64x64", "--epochs", "1", "--storage", str(tmp_path / "runs"),
        "--experiment", "t", "--json", *extra,
    ]  # fmt: skip


def environment(tmp_path, ray_address: str | None = None, **extra):
    """The searches' environment: a private local Ray, or with `ray_address` the test process's shared head (the
    `ray_head` fixture), which hrnas joins through RAY_ADDRESS as Ray's own tools do."""
    # One complexity cache for the test session (the presets are counted once, not once per search); it is keyed
    # by genome and input, and written atomically.
    env = dict(os.environ, HRNAS_CACHE=str(tmp_path.parent / "hrnas-cache"), **extra)
    env.pop("RAY_ADDRESS", None)
    if ray_address:
        env.update(RAY_ADDRESS=ray_address, RAY_AUTH_MODE="token")
    return env


def run_search(tmp_path, space_file, *extra, env=None, timeout=600):
    return subprocess.run(
        search_command(tmp_path, space_file, *extra),
        cwd=ROOT,
        env=env or environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def children(tmp_path, summary):
    client = MlflowClient(summary["tracking_uri"])
    runs = client.search_runs(
        [summary["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'"
    )
    return client, runs


def test_search_end_to_end_with_gate_failures_and_front(tmp_path, space_file, capsys):
    # Every shuffle-block genome of width 12 crashes and of width 8 trains with a NaN loss: both must be FAILED
    # runs while the search goes on with the others.
    env = environment(tmp_path, HRNAS_FAULTS="crash:width=12 modules=1,1,1 blocks=1 block=shuffle;"
                                             "nan:width=8 modules=1,1,1 blocks=1 block=shuffle")  # fmt: skip
    done = run_search(tmp_path, space_file, "--trials", "4", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    client, runs = children(tmp_path, summary)
    assert len(runs) == 4  # four trials: every feasible genome once (rejections take no slot)
    assert summary["rejected_over_budget"] >= 1  # the width-16 genomes were sampled and refused before training
    genomes = [r.data.tags["genome"] for r in runs]
    assert len(set(genomes)) == 4 and not any("width=16" in g for g in genomes)
    by_status = {}
    for r in runs:
        by_status.setdefault(r.info.status, []).append(r)
        assert r.data.tags["trial_id"] and r.data.tags["pareto"] in {"true", "false"}
        assert r.data.params["gene.width"] in {"8", "12"} and "gene.kernels" in r.data.params
        assert r.data.metrics["flops"] <= BUDGET_RAW
        for name in ("params", "flops_conv_macs", "flops_macs", "flops_torchstat"):
            assert name in r.data.metrics
    assert len(by_status["FAILED"]) == 2 and len(by_status["FINISHED"]) == 2
    assert all("block=shuffle" in r.data.tags["genome"] for r in by_status["FAILED"])
    for r in by_status["FINISHED"]:
        for name in ("ap", "ap50", "ap75", "ar"):
            assert name in r.data.metrics
        assert [m.step for m in client.get_metric_history(r.info.run_id, "loss")] == [1]
    # The printed front is the non-dominated set of the finished runs, recomputed from MLflow.
    points = [Point(r.info.run_id, r.data.metrics["ap"], r.data.metrics["flops"]) for r in by_status["FINISHED"]]
    expected = {p.key for p in pareto_front(points)}
    assert {p["run_id"] for p in summary["pareto"]} == expected
    assert {r.info.run_id for r in runs if r.data.tags["pareto"] == "true"} == expected
    for p in summary["pareto"]:
        assert set(p) >= {"genes", "ap", "flops"} and p["flops"] <= BUDGET_RAW
    parent = client.get_run(summary["parent_run_id"])
    assert parent.data.params["budget"] == BUDGET and parent.data.params["convention"] == "torchstat"
    assert parent.info.status == "FINISHED" and parent.data.tags["code_version"]
    # a 64x64 trial recipe on another space: no ground truth measures it, and the search says so
    assert parent.data.tags["signal"] == "custom" and "fidelity is unmeasured" in parent.data.tags["signal_fidelity"]
    assert parent.data.tags["signal_fidelity"] in done.stdout
    artifacts = {a.path for a in client.list_artifacts(summary["parent_run_id"], "pareto")}
    assert {"pareto/pareto.csv", "pareto/pareto.md", "pareto/pareto.png", "pareto/pareto.html"} <= artifacts
    assert "mlflow ui --backend-store-uri" in done.stdout
    assert "rejected before training" in done.stderr and "finished" in done.stderr
    # what the figures are, where the report is; the front's trained networks are kept and export by run id
    assert "ap: COCO OKS keypoint AP on the validation split of" in done.stdout and "a search proxy" in done.stdout
    assert f"report: {tmp_path / 'runs' / 't' / 'report'}" in done.stdout
    assert f"non-dominated among the {len(by_status['FINISHED'])} trial(s) that finished within budget" in done.stdout
    front_runs = [r for r in runs if r.data.tags["pareto"] == "true"]
    assert front_runs and all(Path(r.data.tags["checkpoint"]).is_file() for r in front_runs)
    kept = {p.name for p in (tmp_path / "runs" / "t" / "checkpoints").glob("*.pt")}
    assert kept == {f"{r.data.tags['trial_id']}.pt" for r in front_runs}  # the others' were deleted
    store = ["--storage", str(tmp_path / "runs")]
    out = tmp_path / "front.onnx"
    code, printed, err = run_script(capsys, "export", "--run", front_runs[0].info.run_id, *store, "--input", "64x64",
                                    "--out", str(out))  # fmt: skip
    assert code == 0 and out.is_file() and "weights" in printed and "random" not in printed, err
    code, _, err = run_script(capsys, "export", "--trial", by_status["FAILED"][0].data.tags["trial_id"], *store)
    assert code == 2 and "kept no trained weights" in err  # (an --arch export says "weights: random": test_onnx)


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def finished_children(tracking_uri):
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("t")
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.trial_id != ''")
    return [r for r in runs if r.info.status == "FINISHED"]


def sigkill_after_a_finished_trial(tmp_path, command: list[str], env: dict, second: bool = False) -> dict[str, str]:
    """Start the search driver, SIGKILL it (and its local Ray) once a trial has finished; returns {trial_id: run_id}
    of the trials finished by then. `second`: before the kill, a `--resume` of the running search is refused with one
    line naming the running driver."""
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    driver = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        # Reading the MLflow store before the driver has created it would race the driver's schema migration;
        # search.json is written once the search's parent run exists.
        state = tmp_path / "runs" / "t" / "search.json"
        wait_for(lambda: state.is_file() or driver.poll() is not None, 300, "the search's parent run")
        wait_for(lambda: len(finished_children(uri)) >= 1 or driver.poll() is not None, 300, "a finished trial")
        assert driver.poll() is None, driver.communicate()[1].decode()[-3000:]
        before = {r.data.tags["trial_id"]: r.info.run_id for r in finished_children(uri)}
        if second:
            refused = subprocess.run([*command, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True,
                                     timeout=120)  # fmt: skip
            assert refused.returncode == 2 and f"is running now (pid {driver.pid}, started " in refused.stderr
            assert refused.stderr.count("\n") == 1, refused.stderr
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
    finally:
        if driver.poll() is None:
            driver.kill()
        # What the killed driver's local Ray leaves behind is stopped by its session (never `ray stop`).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
    return before


def test_sigkilled_search_resumes_without_losing_or_repeating_trials(tmp_path, space_file):
    env = environment(tmp_path)
    command = search_command(tmp_path, space_file, "--trials", "4", "--epochs", "2")
    # In the first run one genome's trial waits a minute after each epoch (fault `slow`): the driver is still running
    # when the second command and the SIGKILL come (it once finished the whole search first), while the other trials
    # finish. The resume runs without the fault.
    slow = {**env, "HRNAS_FAULTS": "slow:width=12 modules=1,1,1 blocks=1 block=shuffle"}
    before = sigkill_after_a_finished_trial(tmp_path, command, slow, second=True)
    done = run_search(tmp_path, space_file, "--resume", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    client, runs = children(tmp_path, summary)
    trial_ids = [r.data.tags["trial_id"] for r in runs]
    assert len(trial_ids) == len(set(trial_ids)) == 4  # no duplicate run, no lost trial
    for trial_id, run_id in before.items():
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and trial_id in trial_ids
        assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2]  # not trained again
    assert len({r.data.tags["genome"] for r in runs}) == 4
    assert all(r.info.status == "FINISHED" for r in runs)
    assert "resuming the search" in done.stderr


def search_in_process(capsys, monkeypatch, tmp_path, space_file, *extra) -> tuple[int, str]:
    """(exit code, stderr) of the search command run in the test process (`tests.scripts`): for refusals, which
    happen before Ray, a trial or a tracking store start (the command line is search_command's)."""
    monkeypatch.setenv("HRNAS_CACHE", str(tmp_path.parent / "hrnas-cache"))
    code, _, err = run_script(capsys, "search", *search_command(tmp_path, space_file, *extra)[2:])
    return code, err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--budget", "half a gig"], "cannot read budget"),
        (["--budget", "1MFLOPs"], "below the smallest genome"),
        (["--data", "missing.json:nowhere"], "missing.json"),
        (["--tracking-uri", "http://127.0.0.1:9"], "cannot reach the MLflow tracking server"),
        (["--address", "127.0.0.1:9"], "cannot reach a Ray cluster"),
        (["--input", "100x100"], "multiples of 32"),
        (["--trials", "0"], "--trials must be at least 1"),
        (["--batch", "0"], "--batch must be at least 1"),
        (["--lr", "-1"], "the learning rate must be positive"),
    ],
)
def test_bad_input_fails_before_any_trial(tmp_path, space_file, capsys, monkeypatch, extra, message):
    code, err = search_in_process(capsys, monkeypatch, tmp_path, space_file, *extra)
    assert code == 2, err[-2000:]
    assert message in err
    assert not (tmp_path / "runs" / "t" / "tune").exists()  # no trial started


def test_unknown_gene_in_space_fails_before_any_trial(tmp_path, capsys, monkeypatch):
    space = tmp_path / "bad.yaml"
    space.write_text("genes: {width: [8], colour: [red]}")
    code, err = search_in_process(capsys, monkeypatch, tmp_path, space)
    assert code == 2 and "unknown gene 'colour'" in err


def test_a_crash_in_the_driver_ends_its_runs_and_resume_goes_on_past_an_unreadable_tune_state(
    tmp_path, space_file, ray_head
):
    """The crash of a driver (here injected as the searcher hands one genome out) ends the parent and its running
    runs FAILED with one line; a --resume goes on even when the crash left Tune's saved state unreadable (an empty
    tuner.pkl, as Optuna 5.1's unpicklable sampler did) and trains every genome exactly once. On the test process's
    Ray head (the crash is the driver's, whichever Ray it uses)."""
    env = environment(tmp_path, ray_head, HRNAS_FAULTS="driver:width=12 modules=1,1,1 blocks=1 block=weighting")
    crashed = run_search(tmp_path, space_file, "--trials", "4", env=env)
    folder = tmp_path / "runs" / "t"
    assert crashed.returncode == 1, crashed.stderr[-3000:]
    assert "stopped on an error in its driver (RuntimeError: injected driver crash" in crashed.stderr
    assert "Traceback" not in crashed.stderr and "--resume" in crashed.stderr
    assert "injected driver crash" in (folder / "driver-error.txt").read_text()
    state = json.loads((folder / "search.json").read_text())
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    assert client.get_run(state["parent_run_id"]).info.status == "FAILED"
    experiment = client.get_experiment_by_name("t").experiment_id
    assert not client.search_runs([experiment], filter_string="status = 'RUNNING'")
    (folder / "tune" / "t" / "tuner.pkl").write_bytes(b"")  # what a crash while Tune writes it leaves
    done = run_search(tmp_path, space_file, "--resume", env=environment(tmp_path, ray_head))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "saved Tune state cannot be read (EOFError)" in done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    client, runs = children(tmp_path, summary)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    genomes = [r.data.tags["genome"] for r in finished]
    assert len(genomes) == len(set(genomes)) == 4  # every feasible genome once, none twice
    assert client.get_run(summary["parent_run_id"]).info.status == "FINISHED"


def bad_data(tmp_path, fault: str) -> str:
    """A --data that exists but cannot be trained on: its images missing, its annotations not JSON, or no person with
    a labelled keypoint."""
    folder = tmp_path / "data"
    folder.mkdir()
    annotations = json.loads((MINI / "test_coco.json").read_text())
    if fault == "no keypoints":
        for annotation in annotations["annotations"]:
            annotation["num_keypoints"] = 0
    if fault != "images missing":
        for image in MINI.glob("*.jpg"):
            shutil.copy(image, folder / image.name)
    path = folder / "people.json"
    path.write_text("{not json" if fault == "not json" else json.dumps(annotations))
    return f"{path}:{folder}"


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("images missing", "000000000785.jpg"),
        ("not json", "is not valid JSON"),
        ("no keypoints", "no person with a labelled keypoint"),
    ],
)
def test_bad_data_is_one_line_before_any_trial(tmp_path, space_file, capsys, fault, message):
    code, _, err = run_script(
        capsys, "search", "--budget", BUDGET, "--space", str(space_file), "--data", bad_data(tmp_path, fault),
        "--storage", str(tmp_path / "runs"), "--experiment", "t",
    )  # fmt: skip
    assert code == 2 and message in err, err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.strip().splitlines()[-1]]
    assert not (tmp_path / "runs" / "t" / "search.json").exists()  # nothing started: no parent run, no Ray


def test_a_search_whose_every_trial_fails_exits_with_one_line(tmp_path, space_file, ray_head):
    env = environment(tmp_path, ray_head, HRNAS_FAULTS="crash:modules=1,1,1")
    done = run_search(tmp_path, space_file, "--trials", "2", env=env)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: every trial of the search failed (2); the first: RuntimeError: injected crash")
    state = json.loads((tmp_path / "runs" / "t" / "search.json").read_text())
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    assert client.get_run(state["parent_run_id"]).info.status == "FAILED"


def test_resume_with_other_options_is_refused_naming_the_differences(tmp_path, space_file, capsys):
    from nas.options import SearchArgs

    storage = str(tmp_path / "runs")
    SearchArgs(budget=BUDGET, space=str(space_file), storage=storage, experiment="t").absolute().save()
    code, _, err = run_script(
        capsys, "search", "--budget", "30M", "--space", str(space_file), "--storage", storage, "--experiment", "t",
        "--objectives", "ap,latency", "--resume",
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert f"--budget 30M (started with {BUDGET})" in err and "--objectives ap,latency (started with ap,flops)" in err
    assert "--space" not in err  # the same space, given again: no difference


def test_resume_without_a_search_is_a_clear_error(tmp_path, space_file, capsys, monkeypatch):
    code, err = search_in_process(capsys, monkeypatch, tmp_path, space_file, "--resume")
    assert code == 2 and "nothing to resume" in err


def test_second_search_in_the_same_place_needs_resume(tmp_path, space_file, capsys, monkeypatch):
    folder = tmp_path / "runs" / "t"
    folder.mkdir(parents=True)
    (folder / "search.json").write_text("{}")
    code, err = search_in_process(capsys, monkeypatch, tmp_path, space_file)
    assert code == 2 and "--resume" in err


def test_bad_input_is_reported_before_an_existing_search(tmp_path, space_file, capsys):
    folder = tmp_path / "runs" / "t"
    folder.mkdir(parents=True)
    (folder / "search.json").write_text("{}")
    code, _, err = run_script(
        capsys, "search", "--budget", "half a gig", "--space", str(space_file), "--storage", str(tmp_path / "runs"),
        "--experiment", "t",
    )  # fmt: skip
    assert code == 2 and "cannot read budget" in err and "already exists" not in err


def test_more_cpus_per_trial_than_any_node_has_is_an_error_before_any_trial(tmp_path, space_file):
    cpus = str(max(4, 2 * (os.cpu_count() or 1)))  # more than the local Ray detects on this machine
    started = time.time()
    done = run_search(tmp_path, space_file, "--cpus-per-trial", cpus, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"--cpus-per-trial {cpus}: no node of the local Ray instance" in errors[0]
    assert "cluster only has" not in done.stderr and time.time() - started < 120
    assert not list((tmp_path / "runs").glob("t/tune/t/train_trial_*"))  # no trial
    assert not (tmp_path / "runs" / "t" / "search.json").exists()  # and no search to resume: fix and run again


def test_ray_address_in_the_environment_is_the_default_address(tmp_path, space_file, ray_head):
    """As for Ray's own tools, $RAY_ADDRESS is the cluster to join when --address is not given: the check of the
    trials' resources runs against that cluster (the test process's shared head), not a new local instance."""
    cpus = str(max(4, 2 * (os.cpu_count() or 1)))
    done = run_search(tmp_path, space_file, "--cpus-per-trial", cpus, env=environment(tmp_path, ray_head), timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"--cpus-per-trial {cpus}: no node of {ray_head}" in done.stderr


def interrupt_a_running_search(tmp_path, send) -> tuple[list[str], Path, str, MlflowClient, list, list]:
    """Start a search of a two-genome space whose trials wait a minute after each epoch (fault `slow`), stop it with
    `send(driver)` while a trial runs and check what any stop must leave: exit 130, the parent and the running trial
    KILLED (not FINISHED), the resume command printed. Returns (command, space, stderr, client, parents, killed)."""
    base = tmp_path / "tiny-base.yaml"
    base.write_text(BASE)
    space = tmp_path / "two.yaml"
    space.write_text(f"name: two\nbase: {base}\ngenes:\n  width: [8, 12]\n")
    env = environment(tmp_path)
    command = search_command(tmp_path, space, "--trials", "5", "--cpus-per-trial", "2", "--epochs", "2")
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        slow = {**env, "HRNAS_FAULTS": "slow:stem="}
        driver = subprocess.Popen(command, cwd=ROOT, env=slow, stdout=subprocess.DEVNULL, stderr=err,
                                  start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: " start " in err_path.read_text(), 300, "a running trial")
        time.sleep(1)
        send(driver)
        assert driver.wait(120) == 130, err_path.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(driver.pid, signal.SIGKILL)
    stderr = err_path.read_text()
    assert "Continue it with:" in stderr and f"{command[1]} " in stderr and stderr.rstrip().endswith("--resume")
    assert "Tuner.restore" not in stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("t").experiment_id
    parent = [r for r in client.search_runs([experiment]) if r.data.tags.get("kind") == "search"]
    assert len(parent) == 1 and parent[0].info.status == "KILLED"
    interrupted = client.search_runs([experiment], filter_string="tags.trial_id != ''")
    assert interrupted and all(r.info.status == "KILLED" for r in interrupted)
    return command, space, stderr, client, parent, interrupted


def test_sigterm_stops_a_search_as_ctrl_c_does(tmp_path):
    """SIGTERM to the driver alone (`kill PID`, a batch scheduler's preemption, `timeout`) stops the search as Ctrl-C
    does (Ray's own handler used to abort the driver and leave its MLflow runs RUNNING for ever)."""
    _, _, stderr, *_ = interrupt_a_running_search(tmp_path, lambda driver: driver.send_signal(signal.SIGTERM))
    assert "SIGTERM" in stderr and "Aborted" not in stderr


def test_ctrl_c_stops_a_search_that_resume_completes(tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) while a trial runs: exit 130, the parent and the running
    trial KILLED (not FINISHED), the resume command printed; `--resume` finishes both genomes of a two-genome space
    once each and then ends the search as exhausted (asked for 5). `--cpus-per-trial 2`: one trial at a time here."""
    epochs = 2
    _, space, _, client, parent, interrupted = interrupt_a_running_search(
        tmp_path, lambda driver: os.killpg(driver.pid, signal.SIGINT)
    )
    env = environment(tmp_path)
    done = run_search(tmp_path, space, "--resume", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["parent_run_id"] == parent[0].info.run_id
    _, runs = children(tmp_path, summary)
    trial_ids = [r.data.tags["trial_id"] for r in runs]
    assert len(runs) == len(set(trial_ids)) == 2 and {r.info.run_id for r in interrupted} <= {
        r.info.run_id for r in runs
    }
    assert all(r.info.status == "FINISHED" and r.data.tags["stopped_early"] == "false" for r in runs)
    for r in runs:
        assert [m.step for m in client.get_metric_history(r.info.run_id, "loss")] == list(range(1, epochs + 1))
    assert client.get_run(summary["parent_run_id"]).info.status == "FINISHED"
    assert "looks exhausted" in done.stderr
    running = [
        int(line.split(" running")[0].rsplit(" ", 1)[-1]) for line in done.stderr.splitlines() if " running," in line
    ]
    assert running and max(running) <= max(1, (os.cpu_count() or 1) // 2)
    assert not list((tmp_path / "runs" / "t" / "tune").rglob("checkpoint.pt"))  # finished trials keep no checkpoint


def test_asha_stops_a_poor_trial_and_keeps_it_off_the_front(tmp_path, ray_head, ray_head_cache):
    """--scheduler asha --epochs 2: rung at epoch 1. Trials run one at a time (all CPUs per trial) in the seeded
    sampler's order, width 12 then width 16; width 16 reports an AP far below (fault `poor`), so ASHA stops it.
    On an existing Ray head given by --address, started with another cache folder than the driver's: the trials
    must still use the driver's (it travels in the job's runtime environment), or each node would generate and
    index its own data."""
    base = tmp_path / "tiny-base.yaml"
    base.write_text(BASE)
    space = tmp_path / "three.yaml"
    space.write_text(f"name: three\nbase: {base}\ngenes:\n  width: [8, 12, 16]\n")
    env = environment(tmp_path, HRNAS_FAULTS="poor:width=16 ", RAY_AUTH_MODE="token")
    cpus = str(os.cpu_count() or 1)
    done = run_search(tmp_path, space, "--budget", "100M", "--trials", "2", "--epochs", "2", "--scheduler", "asha",
                      "--cpus-per-trial", cpus, "--address", ray_head, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    client, runs = children(tmp_path, summary)
    by_width = {r.data.params["gene.width"]: r for r in runs}
    assert set(by_width) == {"12", "16"}, "the seeded sampler's first two genomes changed: adapt the fault pattern"
    stopped, complete = by_width["16"], by_width["12"]
    assert stopped.info.status == complete.info.status == "FINISHED"
    assert stopped.data.tags["stopped_early"] == "true" and complete.data.tags["stopped_early"] == "false"
    assert [m.step for m in client.get_metric_history(stopped.info.run_id, "loss")] == [1]
    assert [m.step for m in client.get_metric_history(complete.info.run_id, "loss")] == [1, 2]
    assert stopped.data.tags["pareto"] == "false" and complete.data.tags["pareto"] == "true"
    assert [p["run_id"] for p in summary["pareto"]] == [complete.info.run_id]
    assert summary["trials_stopped_early"] == 1
    assert not ray_head_cache.exists()
