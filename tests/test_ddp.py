"""Data-parallel training (`hrnas train --ddp N`): the shares of a global batch, the exact gradient equivalence of
two gloo processes, and the real Ray Train runs end to end (equivalence, Ctrl-C and resume, a supernet on the
synthetic default).

Tolerances, measured on this 2-core machine with the TINY network of test_training, batch 4, 2 epochs:
- BatchNorm frozen (running statistics, so per-rank BN cannot matter): 2 gloo processes give the one-process loss
  curve to 1.3e-7 (float summation order). Broken on purpose, the curve moves by 3.5e-5..6e-4: without DDP's
  all-reduce 3.8e-5 / 3.6e-4, without weighing each rank's loss by its share of the loss denominator 3.5e-5 /
  6.3e-4. EXACT = 1e-5 lies between.
- Real training (BatchNorm statistics per rank, over 2 images instead of 4): the curve differs by 1.2e-3..4.5e-3
  (2 to 4 epochs); BN_TOLERANCE = 1e-2. A rank that trained on the whole global batch instead of its share would
  give exactly the one-process curve (identical gradients and BN statistics), hence the lower bound NOT_EQUAL.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import ray.train
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import pose.train as pose_train
from nas.ddp import raise_input_error
from pose.coco import parse_data
from pose.loading import Replicas, ShareOfBatches
from pose.train import load_data, train
from tests.scripts import run_script
from tests.test_ablation import TINY as TINY_TABLE
from tests.test_training import MINI_DATA, RECIPE, ROOT, TINY

EXACT = 1e-5
BN_TOLERANCE = 1e-2
NOT_EQUAL = 1e-6
# --device cpu where a test means the CPU (gloo): on a GPU machine the default would be CUDA (nccl)
TINY_ARGS = ["--arch", "litehrnet-18", "--gene", "width=8", "--gene", "modules=[1,1,1]", "--threads", "1", "--device",
             "cpu"]  # fmt: skip
MINI_ARGS = [*TINY_ARGS, "--data", MINI_DATA, "--input", "64x64", "--batch", "4"]


def relative_differences(curve: list[float], reference: list[float]) -> list[float]:
    assert len(curve) == len(reference)
    return [abs(a - b) / abs(b) for a, b in zip(curve, reference, strict=True)]


@pytest.mark.parametrize(("size", "batch", "world"), [(30, 12, 2), (30, 12, 3), (5, 8, 2)])
def test_the_shares_of_the_ranks_are_the_one_process_batches(size, batch, world):
    """Rank by rank, the shares of each global batch put back together are that batch; the shares are equal when
    the batch divides, and no index is seen twice."""
    batches = list(torch.utils.data.BatchSampler(range(size), batch, drop_last=size > batch))
    shares = [list(ShareOfBatches(batches, Replicas(rank, world))) for rank in range(world)]
    for step, whole in enumerate(batches):
        parts = [shares[rank][step] for rank in range(world)]
        assert sum(parts, []) == whole
        if len(whole) % world == 0:
            assert {len(part) for part in parts} == {len(whole) // world}


def frozen_batchnorm(build):
    """build_model whose BatchNorm layers stay in eval mode (running statistics): per-rank BN cannot matter."""

    def build_frozen(*args, **kwargs):
        model = build(*args, **kwargs)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.train = lambda mode=True, m=module: nn.Module.train(m, False)
        return model

    return build_frozen


def gloo_replica(rank: int, port: int, recipe, losses) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    pose_train.build_model = frozen_batchnorm(pose_train.build_model)
    result = train(TINY, load_data(parse_data(MINI_DATA)), recipe, quiet=True, replicas=Replicas(rank, 2))
    if rank == 0:
        losses.put([h["loss"] for h in result["history"]])
    dist.destroy_process_group()


def test_two_gloo_replicas_follow_the_one_process_curve_exactly(monkeypatch):
    """pose.train's data parallelism itself (no Ray): shares, all-reduced gradients and share-weighted losses give
    the one-process curve to float precision once BatchNorm cannot tell the shares from the batch."""
    monkeypatch.setattr(pose_train, "build_model", frozen_batchnorm(pose_train.build_model))
    one = [h["loss"] for h in train(TINY, load_data(parse_data(MINI_DATA)), RECIPE, quiet=True)["history"]]
    context = mp.get_context("spawn")
    losses = context.Queue()
    port = 29500 + os.getpid() % 1000
    mp.start_processes(gloo_replica, args=(port, RECIPE, losses), nprocs=2, start_method="spawn")
    assert max(relative_differences(losses.get(timeout=5), one)) < EXACT


def ray_processes(out: Path) -> list[str]:
    """Command lines of live processes of the private Ray instance of the job folder `out` (nas.tune_run)."""
    tag = f"hrnas-ray-{hashlib.sha1(str(out).encode()).hexdigest()[:10]}"
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if tag in text:
            found.append(text)
    return found


def start_cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "hrnas.cli", "train", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_ddp_follows_the_one_process_curve_and_resumes_after_ctrl_c(tmp_path):
    """--ddp 2 on coco-mini, interrupted with Ctrl-C once Ray Train holds a checkpoint, then rerun: it resumes after
    the last checkpointed epoch, and the whole curve is the one-process one within BN_TOLERANCE (not identical).
    The checkpoints go through Ray Train's storage, here --ray-storage (on a cluster: a folder every node sees)."""
    out, shared = tmp_path / "run", tmp_path / "shared"
    args = [*MINI_ARGS, "--epochs", "4", "--ddp", "2", "--out", str(out), "--ray-storage", str(shared), "--json"]
    first = start_cli(*args)
    snapshot = shared / "ray-train" / "checkpoint_manager_snapshot.json"
    deadline = time.monotonic() + 300
    while not snapshot.is_file() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    assert "interrupted: run the same command again" in err
    assert ray_processes(out) == []  # every process of the local Ray instance has stopped
    done_before = max(json.loads(snapshot.read_text())["latest_checkpoint_result"]["metrics"]["epoch"], 1)
    assert done_before < 4, "the first run ended before Ctrl-C: nothing left to resume"

    second = start_cli(*args)
    stdout, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    assert "data-parallel: 2 Ray Train workers, 2 images each per step" in err  # --batch 4 split in two
    assert f"epoch {done_before}/4" not in err and f"epoch {done_before + 1}/4" in err  # resumed, not restarted
    assert ray_processes(out) == []
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 4 and 0.0 <= summary["ap"] <= 1.0
    history = json.loads((out / "result.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert (out / "checkpoint.pt").is_file()  # the last checkpoint, where evaluate and export look
    assert not (out / "ray-train").exists() and list(shared.glob("ray-train/checkpoint_*/checkpoint.pt"))

    one = train(TINY, load_data(parse_data(MINI_DATA)), replace(RECIPE, epochs=4), quiet=True)
    differences = relative_differences([h["loss"] for h in history], [h["loss"] for h in one["history"]])
    assert max(differences) < BN_TOLERANCE, differences
    assert max(differences) > NOT_EQUAL, "identical curves: did every rank train on the whole batch?"


def test_a_supernet_trains_as_two_ray_train_workers(tmp_path, ray_head):
    """`hrnas supernet train --ddp 2 --address` on the test process's Ray head, on the synthetic default (the data
    every Ray Train worker must find through the driver's cache folder, which travels in the job's runtime
    environment): both ranks draw the same genomes and average their gradients; rank 0 scores, checkpoints, and its
    records reach the MLflow run after the training."""
    from mlflow.tracking import MlflowClient

    from tests.test_supernet_training import TINY_SPACE

    space = tmp_path / "tiny.yaml"
    space.write_text(json.dumps(TINY_SPACE))
    out, store = tmp_path / "sn", tmp_path / "store"
    args = ["--space", str(space), "--budget", "none", "--sandwich", "1", "--calibration", "8", "--epochs", "2",
            "--max-steps", "2", "--out", str(out), "--storage", str(store), "--json"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "hrnas.cli", "supernet", "train", "--input", "64x64", "--batch", "4", "--threads", "1",
         "--device", "cpu", "--ddp", "2", "--address", ray_head, *args],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "token"}, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "data: synthetic" in done.stderr
    assert "data-parallel: 2 Ray Train workers, 2 images each per step" in done.stderr  # --batch 4 split in two
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and set(summary["tracked"]) == {"largest", "smallest"}
    assert (out / "supernet.pt").is_file() and ray_processes(out) == []
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("hrnas-supernet").experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "ap.largest")] == [1, 2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ddp", "2", "--batch", "5"], "--batch 5 does not split evenly between --ddp 2 workers"),
        (["--ddp", "0"], "--ddp 0: the number of workers must be at least 1"),
        (["--address", "127.0.0.1:6379"], "--address joins a Ray cluster for --ddp"),
        (["--ray-storage", "/tmp"], "--ray-storage holds the checkpoints of a --ddp training; add --ddp N"),
    ],
)
def test_bad_ddp_input_is_one_error_line_before_ray_starts(capsys, args, message):
    code, _, err = run_script(capsys, "train", *MINI_ARGS, *args)
    assert code == 2 and message in err
    assert "data-parallel" not in err  # nothing started


def test_more_workers_than_the_local_ray_fits_is_a_clear_error(capsys, tmp_path):
    code, _, err = run_script(capsys, "train", *MINI_ARGS, "--ddp", "2", "--threads", "100000", "--out", str(tmp_path))
    assert code == 2
    assert "--ddp 2 --threads 100000: the local Ray instance has" in err and "room for 0 such workers" in err
    assert ray_processes(tmp_path) == []


def test_a_workers_input_error_is_one_line_that_names_the_run_folder(tmp_path):
    """A checkpoint of another recipe under --out fails in every worker (pose.train's check) with the path of the
    worker's copy; the command says it in one line about <out>/ray-train (checked end to end by hand: rerun with
    another --lr, exit 2)."""
    message = "belongs to a different genome, recipe or data set; use another --out"
    copy = tmp_path / "tmp" / "hrnas-ddp-x1y2z3" / "checkpoint.pt"
    failure = ray.train.WorkerGroupError("rank 0 failed", {0: ValueError(f"{copy} {message}")})
    with pytest.raises(ValueError) as raised:
        raise_input_error(failure, tmp_path / "ray-train")
    assert str(raised.value) == f"{tmp_path / 'ray-train'} {message}"
    crash = ray.train.WorkerGroupError("rank 1 failed", {1: FloatingPointError("loss became nan")})
    raise_input_error(crash, tmp_path / "ray-train")  # not an input error: the caller re-raises the failure


ONE_ROW = TINY_TABLE.split("  - row: small without cross")[0]  # its first row only


def test_an_ablation_row_trains_as_two_ray_train_workers(tmp_path, ray_head):
    """--ddp-per-trial 2 on the test process's Ray head: the row's Tune trial drives a Ray Train run of 2 workers
    (its reports reach Tune with Ray Train's checkpoint path) and finishes in MLflow like any row."""
    table = tmp_path / "one.yaml"
    table.write_text(ONE_ROW)
    done = subprocess.run(
        [sys.executable, "-m", "hrnas.cli", "ablate", "--table", str(table), "--data", MINI_DATA, "--input", "64x64",
         "--batch", "4", "--ddp-per-trial", "2", "--storage", str(tmp_path / "runs"), "--json"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ray_head, "RAY_AUTH_MODE": "token"},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads(done.stdout.strip().splitlines()[-1])["rows"]
    assert row["status"] == "FINISHED" and 0.0 <= row["ap"] <= 1.0
    (result,) = (tmp_path / "runs").rglob("result.json")
    reports = [json.loads(line) for line in result.read_text().splitlines()]
    assert reports[-1]["complete"] and "/training/ray-train/checkpoint_" in reports[-1]["checkpoint_path"]


@pytest.mark.parametrize("command", ["ablate", "search"])
def test_a_batch_that_ddp_per_trial_cannot_split_is_refused(capsys, tmp_path, command):
    job = ["--table", "ccw"] if command == "ablate" else ["--budget", "0.5G"]
    code, _, err = run_script(capsys, command, *job, "--batch", "6", "--ddp-per-trial", "4", "--storage", str(tmp_path))
    assert code == 2 and "--batch 6 does not split evenly between the 4 workers of --ddp-per-trial 4" in err


def test_ddp_threads_default_to_each_workers_share_of_the_cpus():
    """`train --ddp 2` on a 2-core machine ran into "room for 1 such workers": --threads defaulted to 2 a worker."""
    from hrnas.commands.train import build_parser, recipe_from_args
    from pose.train import Recipe

    cpus = len(os.sched_getaffinity(0))
    ddp = recipe_from_args(build_parser().parse_args(["--arch", "litehrnet-18", "--ddp", "2"]))
    assert ddp.threads == max(1, cpus // 2)
    assert recipe_from_args(build_parser().parse_args(["--arch", "litehrnet-18"])).threads == Recipe().threads
    assert (
        recipe_from_args(build_parser().parse_args(["--arch", "litehrnet-18", "--ddp", "2", "--threads", "3"])).threads
        == 3
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sync-bn"], "--sync-bn synchronises BatchNorm between --ddp workers; add --ddp N"),
        (["--sync-bn", "--ddp", "2"], "--sync-bn needs CUDA workers (SyncBatchNorm runs on GPUs), not cpu"),
    ],
)
def test_sync_bn_needs_ddp_on_cuda(capsys, args, message):
    code, _, err = run_script(capsys, "train", *MINI_ARGS, *args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_sync_bn_turns_every_batchnorm_into_syncbatchnorm_with_the_same_checkpoint_keys():
    net = pose_train.build_model(TINY, RECIPE, 17)
    keys = list(net.state_dict())
    synced = pose_train.with_sync_batchnorm(net)
    assert not [m for m in synced.modules() if type(m) is nn.BatchNorm2d]
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in synced.modules()) > 10
    assert list(synced.state_dict()) == keys


def test_relative_data_paths_are_made_absolute_before_workers_start(tmp_path, monkeypatch):
    from pose.coco import worker_paths

    monkeypatch.chdir(tmp_path)
    data, val, boxes = worker_paths("ann.json:images", "coco", "boxes.json")
    assert data == f"{tmp_path / 'ann.json'}:{tmp_path / 'images'}"
    assert val == str(tmp_path / "coco") and boxes == str(tmp_path / "boxes.json")
    assert worker_paths("synthetic", None, None) == ("synthetic", None, None)


def test_the_drivers_nccl_and_gloo_settings_reach_the_workers(monkeypatch):
    from nas.ray_common import runtime_env

    for name in ("NCCL_SOCKET_IFNAME", "TORCH_NCCL_ASYNC_ERROR_HANDLING", "GLOO_SOCKET_IFNAME", "UNRELATED_SETTING"):
        monkeypatch.setenv(name, "eth1")
    env = runtime_env()["env_vars"]
    assert {k: env[k] for k in env if "NCCL" in k or "GLOO" in k} == {
        "NCCL_SOCKET_IFNAME": "eth1", "TORCH_NCCL_ASYNC_ERROR_HANDLING": "eth1", "GLOO_SOCKET_IFNAME": "eth1",
    }  # fmt: skip
    assert "UNRELATED_SETTING" not in env


def test_a_cuda_device_is_made_the_current_one_with_cudnn_benchmark(monkeypatch):
    """`--device cuda:1` (or a Ray Train worker's GPU): autocast and new tensors must not land on cuda:0."""
    from pose.device import CPU, Device

    current = []
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    CPU.activate()
    assert current == [] and not torch.backends.cudnn.benchmark
    Device(torch.device("cuda", 1), torch.bfloat16).activate()
    assert current == [torch.device("cuda", 1)]
    assert torch.backends.cudnn.benchmark  # a training's input size is fixed: cuDNN's search pays off


def test_a_cuda_job_is_checked_against_the_clusters_gpus_not_the_drivers(capsys, tmp_path):
    """The machine that starts `--ddp N --device cuda` may have no GPU (a cluster's head): what counts is whether
    the cluster has N GPUs; here the local Ray instance has none."""
    code, _, err = run_script(capsys, "train", *TINY_ARGS[:-2], "--data", MINI_DATA, "--input", "64x64", "--batch",
                              "4", "--ddp", "2", "--device", "cuda", "--out", str(tmp_path))  # fmt: skip
    assert code == 2 and "this machine has no CUDA device" not in err
    assert "--ddp 2 --threads 1: the local Ray instance has" in err and "and 0 GPUs, room for 0 such workers" in err


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), torch.float16), ((8, 0), torch.bfloat16)])
def test_each_worker_resolves_its_precision_on_its_own_gpu(monkeypatch, capability, expected):
    from nas.ddp import worker_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    device = worker_device(torch.device("cuda", 1), "auto")
    assert device.device == torch.device("cuda", 1) and device.amp is expected
    assert worker_device(torch.device("cpu"), "auto").amp is None
