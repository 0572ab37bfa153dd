"""Where trials run: CPUs and GPU shares per trial, the device each trial resolves, and how many run at once."""

import contextlib
import re
from types import SimpleNamespace

import pytest
import torch

from nas.options import SearchError, TrialResources, check_latency_gpu, parse_resources, trial_workers
from nas.ray_common import runtime_env
from nas.tune_run import concurrency
from search_space.latency import LatencyError, Setting, parse_setting
from tests.scripts import run_script
from tests.test_search import search_in_process, space_file

assert space_file  # the fixture, imported for these tests

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a machine without CUDA says")


def test_cpu_trials_by_default():
    resources = parse_resources(1, 0.0, "auto", "auto", local=True)
    assert resources == TrialResources(1, 0.0, "cpu", "auto")
    assert resources.ray_resources() == {"cpu": 1}


def test_a_gpu_share_on_a_cluster_trains_on_the_trials_own_cuda_device():
    resources = parse_resources(2, 0.5, "auto", "bf16", local=False)  # the driver need not have the GPUs
    assert (resources.device, resources.amp) == ("cuda", "bf16")
    assert resources.ray_resources() == {"cpu": 2, "gpu": 0.5}


@pytest.mark.parametrize(
    ("cpus", "gpus", "device", "amp", "message"),
    [
        (1, 0.0, "cuda:1", "auto", "Ray gives each trial its own GPU; use --device cuda"),
        (1, 0.0, "tpu", "auto", "--device 'tpu': choose one of auto, cpu, cuda, mps"),
        (1, 0.0, "cpu", "fp8", "--amp 'fp8': choose one of"),
        (1, -1.0, "auto", "auto", "--gpus-per-trial -1: must be 0"),
        (1, 1.5, "auto", "auto", "a share above one GPU must be whole"),
        (1, 0.0, "cuda", "auto", "a trial sees no GPU unless it reserves one; add --gpus-per-trial"),
        (1, 1.0, "cpu", "auto", "the trials would leave their GPUs idle"),
        (1, 0.0, "cpu", "fp16", "--amp fp16 needs a CUDA device"),
        (0, 0.0, "cpu", "auto", "--cpus-per-trial must be at least 1"),
    ],
)
def test_impossible_trial_resources_are_named(cpus, gpus, device, amp, message):
    with pytest.raises(SearchError, match=re.escape(message)):
        parse_resources(cpus, gpus, device, amp, local=False)


@NO_CUDA
@pytest.mark.parametrize("extra", [["--gpus-per-trial", "0.5"], ["--device", "cuda"]])
@pytest.mark.parametrize("command", ["search", "ablate"])
def test_gpu_trials_on_a_machine_without_cuda_fail_before_ray_starts(tmp_path, capsys, extra, command):
    target = ["--budget", "0.5GFLOPs"] if command == "search" else ["--table", "lite-hrnet"]
    code, _, err = run_script(capsys, command, *target, *extra, "--storage", str(tmp_path / "runs"))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, err
    assert f"{extra[0]} {extra[1]}: this machine has no CUDA device" in errors[0]
    assert not (tmp_path / "runs").exists()  # nothing was started, nothing to resume


NODES = [(16.0, 1.0), (8.0, 2.0), (4.0, 0.0)]


@pytest.mark.parametrize(
    ("cpus", "gpus", "expected"),
    [
        (1, 0.0, 28),  # CPU trials use every node
        (1, 0.5, 2 + 4),  # GPU shares bound the GPU nodes; the CPU-only node runs none
        (4, 0.5, 2 + 2),  # ... unless the CPUs bind first
        (1, 1 / 3, 3 + 6),  # three thirds fill a GPU
        (1, 2.0, 1),
    ],
)
def test_concurrency_follows_each_nodes_cpus_and_gpus(cpus, gpus, expected):
    resources = TrialResources(cpus, gpus, "cuda" if gpus else "cpu")
    assert concurrency(resources, NODES, "the cluster") == expected


def test_a_trial_larger_than_every_node_is_an_error():
    with pytest.raises(SearchError, match="--gpus-per-trial 4: no node of the cluster has that many GPUs"):
        concurrency(TrialResources(1, 4.0, "cuda"), NODES, "the cluster")
    with pytest.raises(SearchError, match="--cpus-per-trial 32: no node of the cluster has that many CPUs"):
        concurrency(TrialResources(32), NODES, "the cluster")


def test_the_cache_folder_travels_in_the_runtime_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HRNAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HRNAS_FAULTS", raising=False)
    assert runtime_env() == {"env_vars": {"HRNAS_CACHE": str(tmp_path / "cache")}}
    monkeypatch.setenv("HRNAS_FAULTS", "crash:w8")
    assert runtime_env()["env_vars"]["HRNAS_FAULTS"] == "crash:w8"


def test_a_trial_of_several_gpus_is_a_ray_train_run_of_one_worker_per_gpu():
    resources = parse_resources(4, 2.0, "auto", "auto", local=False)
    worker, count = trial_workers(resources, 1)
    assert count == 2 and worker == TrialResources(4, 1.0, "cuda", "auto")  # what each worker holds
    assert concurrency(worker, [(16.0, 4.0)], "a node") // count == 2  # two such trials on a 4-GPU node
    assert trial_workers(resources, 2) == (worker, 2)
    with pytest.raises(SearchError, match="one worker per GPU; leave --ddp-per-trial out"):
        trial_workers(resources, 3)
    with pytest.raises(SearchError, match="--gpus-per-trial 2 .one worker per GPU"):
        trial_workers(parse_resources(1, 1.0, "cuda", "auto", local=False), 2)
    cpu = parse_resources(1, 0.0, "cpu", "auto", local=True)
    assert trial_workers(cpu, 2) == (cpu, 2) and trial_workers(cpu, 1) == (cpu, 1)


def test_each_worker_of_a_gpu_trial_resolves_its_own_device(monkeypatch, tmp_path):
    """The trial hands its Ray Train workers the device kind and --amp as asked; nothing is resolved in the trial
    (whose process holds no GPU of its own)."""
    import nas.ddp
    import nas.trial
    from nas.ray_common import recipe_config
    from pose.train import Recipe
    from tests.test_training import TINY

    jobs = []
    monkeypatch.setattr(nas.ddp, "train_in_trial", lambda job, folder, metrics_of: jobs.append(job))
    monkeypatch.setattr(nas.trial.tune, "get_context", lambda: SimpleNamespace(get_trial_dir=lambda: str(tmp_path)))
    config = {"genome": TINY.compact(), "recipe": recipe_config(Recipe(batch=4)), "data": "synthetic", "flops": 1,
              "cost": {}, "device": "cuda", "amp": "bf16"}  # fmt: skip
    nas.trial.train_trial(config, ddp_workers=2)
    (job,) = jobs
    assert job.workers == 2 and job.device.device.type == "cuda" and job.device.amp is None and job.amp == "bf16"


def test_the_batch_splits_between_the_gpus_of_a_trial(tmp_path, capsys, monkeypatch, space_file):
    code, err = search_in_process(capsys, monkeypatch, tmp_path, space_file, "--gpus-per-trial", "2",
                                  "--batch", "3")  # fmt: skip
    assert code == 2 and "--batch 3 does not split evenly between the 2 workers of --gpus-per-trial 2" in err


def test_gpu_latency_needs_a_whole_gpu_per_trial():
    place = {"resources": TrialResources(1, 0.5, "cuda", "auto")}
    with pytest.raises(SearchError, match="--latency-device cuda with --gpus-per-trial 0.5.*--gpus-per-trial 1"):
        check_latency_gpu(Setting(device="cuda"), place)
    assert check_latency_gpu(Setting(device="cpu"), place) is place
    whole = {"resources": TrialResources(1, 1.0, "cuda", "auto")}
    assert check_latency_gpu(Setting(device="cuda"), whole) is whole


def test_a_gpu_latency_table_is_read_or_fitted_by_a_task_holding_a_whole_gpu(monkeypatch, tmp_path):
    import nas.search_run as search_run

    calls = []
    monkeypatch.setattr(search_run, "ray_instance", lambda *args: contextlib.nullcontext())
    monkeypatch.setattr(search_run, "in_task", lambda function, *args, resources: calls.append((function, resources)))
    options = SimpleNamespace(latency=Setting(device="cuda"), space=None, folder=tmp_path, address=None, verbose=False)
    search_run.latency_table(options)
    assert calls == [(search_run.table_here, {"num_cpus": 1, "num_gpus": 1})]


def test_a_cluster_checks_its_own_gpus_for_latency():
    setting = parse_setting("ort", "cuda", local=False)  # a head without a GPU starts a cluster's GPU search
    assert setting.device == "cuda"
    if not torch.cuda.is_available():
        with pytest.raises(LatencyError, match="no CUDA device"):
            parse_setting("ort", "cuda")
