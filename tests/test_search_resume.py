"""Interrupted searches on real components, resumed: SIGKILL of the driver (with its private local Ray), Ctrl-C, and a
crash in the driver. The tiny space and coco-mini of tests/test_search.py."""

import contextlib
import json
import os
import signal
import subprocess
import time

from mlflow.tracking import MlflowClient

from tests.test_search import BASE, ROOT, children, environment, run_search, search_command, space_file

assert space_file  # the fixture, imported for these tests


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


def test_ctrl_c_stops_a_search_that_resume_completes(tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) while a trial runs: exit 130, the parent and the running
    trial KILLED (not FINISHED), the resume command printed; `--resume` finishes both genomes of a two-genome space
    once each and then ends the search as exhausted (asked for 5). `--cpus-per-trial 2`: one trial at a time here."""
    base = tmp_path / "tiny-base.yaml"
    base.write_text(BASE)
    space = tmp_path / "two.yaml"
    space.write_text(f"name: two\nbase: {base}\ngenes:\n  width: [8, 12]\n")
    env = environment(tmp_path)
    # The first run's trials wait a minute after each epoch (fault `slow`), so the signal lands while one runs; the
    # resumed run trains without the fault.
    epochs = 2
    command = search_command(tmp_path, space, "--trials", "5", "--cpus-per-trial", "2", "--epochs", str(epochs))
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        slow = {**env, "HRNAS_FAULTS": "slow:stem="}
        driver = subprocess.Popen(command, cwd=ROOT, env=slow, stdout=subprocess.DEVNULL, stderr=err,
                                  start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: " start " in err_path.read_text(), 300, "a running trial")
        time.sleep(1)
        os.killpg(driver.pid, signal.SIGINT)
        assert driver.wait(120) == 130
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
