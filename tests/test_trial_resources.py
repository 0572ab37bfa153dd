"""Where trials run: CPUs and GPU shares per trial, the device each trial resolves, and how many run at once."""

import re

import pytest
import torch

from nas.options import SearchError, TrialResources, parse_resources
from nas.ray_common import runtime_env
from nas.tune_run import concurrency
from tests.scripts import run_script

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
