"""The GPU check (issue 11): training, the fast paths, a search and an export on a CUDA device.

Every test here is marked `cuda` and skipped, with the reason, on a machine without a CUDA device. `bench/gpu.sh`
runs them together with the GPU throughput benchmark; run it on a machine with a GPU.
"""

import json
import math
from dataclasses import replace

import pytest
import torch

from hrnas.commands import export
from pose.coco import parse_data
from pose.device import CPU, resolve_device
from pose.train import load_data, train
from tests.test_equivalence_fast_paths import ARCHS, build_pair
from tests.test_search import children, run_search, space_file  # noqa: F401  (space_file: a fixture)
from tests.test_training import MINI_DATA, RECIPE, TINY

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; this machine has none"),
]
ONE_EPOCH = replace(RECIPE, epochs=1)


@pytest.fixture(scope="module")
def mini_data():
    return load_data(parse_data(MINI_DATA))


@pytest.mark.parametrize("amp", ["bf16", "fp16", "off"])
def test_one_cuda_epoch_gives_a_finite_loss_an_ap_and_its_gpu_memory(mini_data, amp):
    if amp == "bf16" and torch.cuda.get_device_capability(0) < (8, 0):
        pytest.skip("this GPU does not compute bfloat16 natively: --amp bf16 is refused on it")
    device = resolve_device("cuda", amp)
    assert device.device.type == "cuda" and not device.fast
    seen = []
    result = train(TINY, mini_data, ONE_EPOCH, on_epoch=seen.append, quiet=True, device=device)
    assert math.isfinite(result["loss"]) and 0.0 <= result["ap"] <= 1.0
    assert seen[0]["gpu_peak_mib"] > 0


def test_auto_picks_cuda_with_bf16_where_computed_natively_else_fp16():
    device = resolve_device()
    assert device.device == torch.device("cuda")
    native = torch.cuda.get_device_capability(0) >= (8, 0)
    assert device.amp == (torch.bfloat16 if native else torch.float16)


@pytest.mark.parametrize("arch", ARCHS)
def test_fast_configuration_matches_reference_on_cuda(arch):
    """The CPU fast paths (channels-last, the fast dynamic-kernel formulation) compute the reference's function on
    CUDA too, in float64: outputs and input gradients."""
    reference, fast = (model.cuda().train() for model in build_pair(arch))
    x = torch.randn(2, 3, 64, 64, dtype=torch.double, device="cuda")
    x_ref = x.clone().requires_grad_()
    x_fast = x.clone().contiguous(memory_format=torch.channels_last).requires_grad_()
    out_ref, out_fast = reference(x_ref), fast(x_fast)
    torch.testing.assert_close(out_fast, out_ref, rtol=1e-9, atol=1e-9)
    out_ref.square().sum().backward()
    out_fast.square().sum().backward()
    torch.testing.assert_close(x_fast.grad, x_ref.grad, rtol=1e-8, atol=1e-9)


def test_checkpoint_written_on_cuda_resumes_on_cpu(mini_data, tmp_path):
    train(TINY, mini_data, ONE_EPOCH, out_dir=tmp_path, quiet=True, device=resolve_device("cuda", "auto"))
    state = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert all(tensor.device.type == "cpu" for tensor in state["model"].values())
    seen = []
    resumed = train(TINY, mini_data, RECIPE, out_dir=tmp_path, on_epoch=seen.append, quiet=True, device=CPU)
    assert [record["epoch"] for record in seen] == [2]  # epoch 1 came from the CUDA checkpoint
    assert math.isfinite(resumed["loss"]) and 0.0 <= resumed["ap"] <= 1.0


def test_fp16_loss_scale_is_checkpointed_and_resumed(mini_data, tmp_path):
    fp16 = resolve_device("cuda", "fp16")
    train(TINY, mini_data, ONE_EPOCH, out_dir=tmp_path, quiet=True, device=fp16)
    scale = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["scaler"]["scale"]
    assert scale > 0
    seen = []
    train(TINY, mini_data, RECIPE, out_dir=tmp_path, on_epoch=seen.append, quiet=True, device=fp16)
    assert [record["epoch"] for record in seen] == [2] and math.isfinite(seen[0]["loss"])


def test_onnx_export_of_a_cuda_trained_checkpoint(mini_data, tmp_path):
    train(TINY, mini_data, ONE_EPOCH, out_dir=tmp_path, quiet=True, device=resolve_device("cuda", "off"))
    out = tmp_path / "trained.onnx"
    argv = ["--arch", "litehrnet-18", "--gene", "width=8", "--gene", "modules=[1,1,1]", "--input", "64x64"]
    assert export.main([*argv, "--out", str(out), "--checkpoint", str(tmp_path / "checkpoint.pt")]) == 0
    model = export.build_model(TINY, 17, (64, 64))
    model.load_state_dict(torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=True)["model"])
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    diff, _ = export.max_abs_diff(model.eval(), out, x)
    assert diff <= 1e-4


def test_two_trial_search_shares_one_gpu(tmp_path, space_file):  # noqa: F811
    done = run_search(tmp_path, space_file, "--trials", "2", "--gpus-per-trial", "0.5")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    client, runs = children(tmp_path, summary)
    assert len(runs) == 2 and all(run.info.status == "FINISHED" for run in runs)
    assert all(run.data.metrics.get("gpu_peak_mib", 0) > 0 for run in runs)  # each trial trained on its GPU share
    parent = client.get_run(summary["parent_run_id"])
    assert parent.data.params["gpus_per_trial"] == "0.5" and parent.data.params["device"] == "cuda"


def test_uint8_batches_are_normalised_on_the_gpu_to_the_cpus_numbers():
    from pose.dataset import model_input

    batch = torch.randint(0, 256, (2, 3, 32, 24), dtype=torch.uint8).pin_memory()
    on_gpu = model_input(batch, resolve_device("cuda", "off"))
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float32
    torch.testing.assert_close(on_gpu.cpu(), model_input(batch, CPU), rtol=0, atol=0)


def test_prefetched_subnets_on_the_gpu_compute_what_inline_ones_do():
    from search_space.space import SearchSpace
    from supernet.model import SuperNet
    from tests.test_supernet import TINY_SPACE

    space = SearchSpace.from_dict(TINY_SPACE)
    genomes = list(space.valid_genomes())[:3]
    inline, ahead = (SuperNet(space, seed=0).cuda().train() for _ in range(2))
    ahead.prefetch(genomes)
    x = torch.randn(2, 3, 64, 64, device="cuda")
    for genome in genomes:
        assert all(b.device.type == "cuda" for b in ahead.subnet(genome).buffers().values())
        torch.testing.assert_close(ahead(genome, x), inline(genome, x))
