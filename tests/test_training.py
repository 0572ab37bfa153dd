"""Training on real COCO files: same seed same result, a killed run resumes exactly, the CLI end to end."""

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pose.coco import parse_data
from pose.dataset import AUGMENTATIONS, NO_AUGMENT
from pose.device import resolve_device
from pose.losses import weighted_mse
from pose.train import Recipe, learning_rate, load_data, train
from search_space.presets import load_preset

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "data" / "coco-mini"
MINI_DATA = f"{MINI / 'test_coco.json'}:{MINI}"
# A small but complete Lite-HRNet (every block kind runs) so a test epoch takes about a second.
TINY = load_preset("litehrnet-18").with_genes({"width": 8, "modules": [1, 1, 1]})
RECIPE = Recipe(input_hw=(64, 64), epochs=2, batch=4, warmup_iters=2, flip_test=True, threads=1)


@pytest.fixture(scope="module")
def mini_data():
    return load_data(parse_data(MINI_DATA))


class Killed(Exception):
    pass


def test_same_seed_gives_the_same_result(mini_data):
    first = train(TINY, mini_data, RECIPE, quiet=True)
    second = train(TINY, mini_data, RECIPE, quiet=True)
    assert [h["loss"] for h in first["history"]] == [h["loss"] for h in second["history"]]
    assert first["ap"] == second["ap"]
    other_seed = train(TINY, mini_data, replace(RECIPE, seed=1), quiet=True)
    assert [h["loss"] for h in other_seed["history"]] != [h["loss"] for h in first["history"]]


def test_cpu_bfloat16_autocast_trains_to_a_finite_loss_and_an_ap(mini_data):
    """--device cpu --amp bf16 is allowed: one epoch trains and scores, its loss near but not equal to float32's."""
    recipe = replace(RECIPE, epochs=1)
    full = train(TINY, mini_data, recipe, quiet=True)
    bf16 = train(TINY, mini_data, recipe, quiet=True, device=resolve_device("cpu", "bf16"))
    assert math.isfinite(bf16["loss"]) and 0.0 <= bf16["ap"] <= 1.0
    assert bf16["loss"] != full["loss"]  # autocast really ran in bfloat16
    assert bf16["loss"] == pytest.approx(full["loss"], rel=0.02)


def test_killed_training_resumes_from_its_checkpoint(mini_data, tmp_path):
    recipe = replace(RECIPE, epochs=3)
    whole = train(TINY, mini_data, recipe, quiet=True)

    def kill_after_first_epoch(record):
        if record["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        train(TINY, mini_data, recipe, out_dir=tmp_path, on_epoch=kill_after_first_epoch, quiet=True)
    assert (tmp_path / "checkpoint.pt").is_file()
    seen = []
    resumed = train(TINY, mini_data, recipe, out_dir=tmp_path, on_epoch=seen.append, quiet=True)
    assert [r["epoch"] for r in seen] == [2, 3]  # epoch 1 is not trained again
    assert [h["loss"] for h in resumed["history"]] == pytest.approx([h["loss"] for h in whole["history"]], rel=1e-5)
    assert resumed["ap"] == pytest.approx(whole["ap"], abs=1e-6)


def test_checkpoint_of_another_recipe_is_refused(mini_data, tmp_path):
    train(TINY, mini_data, replace(RECIPE, epochs=1), out_dir=tmp_path, quiet=True)
    with pytest.raises(ValueError, match="different genome, recipe or data"):
        train(TINY, mini_data, replace(RECIPE, epochs=1, lr=1e-4), out_dir=tmp_path, quiet=True)


def test_warmup_then_cosine_decay():
    recipe = Recipe(lr=1.0, warmup_iters=10, schedule="cosine")
    rates = [learning_rate(recipe, i, 100) for i in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates.index(max(rates)) == 9  # linear warm-up to the peak
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False))
    assert rates[-1] < 0.01
    short = [learning_rate(recipe, i, 50) for i in range(50)]  # warm-up capped at a tenth of a short run
    assert short.index(max(short)) == 4
    step = Recipe(lr=1.0, warmup_iters=0, schedule="step")
    assert [learning_rate(step, i, 100) for i in (0, 74, 75, 89, 90)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])


def test_target_weights_mask_joints_out_of_the_loss():
    heatmaps, targets = torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4)
    heatmaps[0, 1] = 5.0  # joint 1 is badly wrong but has weight 0
    assert weighted_mse(heatmaps, targets, torch.tensor([[1.0, 0.0]])) == 0
    assert weighted_mse(heatmaps, targets, torch.tensor([[1.0, 1.0]])) > 0


def test_nan_loss_stops_with_a_clear_error(mini_data):
    with pytest.raises(FloatingPointError, match="loss became"):
        train(TINY, mini_data, replace(RECIPE, epochs=1, lr=float("inf"), warmup_iters=0), quiet=True)


def test_weights_blown_up_in_the_last_step_are_caught_before_scoring(mini_data):
    # One step per epoch (12 persons, batch 16): the loss of that step is finite, the weights after it are not.
    with pytest.raises(FloatingPointError, match="weights became NaN or infinite during epoch 1"):
        train(TINY, mini_data, replace(RECIPE, epochs=1, batch=16, lr=float("inf"), warmup_iters=0), quiet=True)


def test_augmentation_is_part_of_the_recipe(mini_data, tmp_path):
    """The recipe's augmentation changes what is trained, and a checkpoint of another augmentation is refused."""
    plain = replace(RECIPE, epochs=1, augment=NO_AUGMENT)
    augmented = replace(plain, augment=AUGMENTATIONS["published"])
    loss = train(TINY, mini_data, plain, out_dir=tmp_path, quiet=True)["loss"]
    assert train(TINY, mini_data, augmented, quiet=True)["loss"] != loss
    with pytest.raises(ValueError, match="different genome, recipe or data"):
        train(TINY, mini_data, augmented, out_dir=tmp_path, quiet=True)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "experiments/train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_train_cli_end_to_end_on_real_coco_images(tmp_path):
    out = tmp_path / "run"
    done = run_cli(
        "--arch", "litehrnet-18", "--gene", "width=8", "--gene", "modules=[1,1,1]",
        "--data", MINI_DATA, "--input", "64x64", "--epochs", "1", "--batch", "4", "--out", str(out), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("ap", "ap50", "ap75", "ar", "epochs", "train_seconds"):
        assert key in summary
    assert summary["epochs"] == 1 and 0.0 <= summary["ap"] <= 1.0
    assert "epoch 1/1" in done.stderr and "12 train / 12 val persons" in done.stderr
    assert json.loads((out / "result.json").read_text())["history"][0]["epoch"] == 1
    assert (out / "checkpoint.pt").is_file()


def test_train_cli_validates_on_the_boxes_of_a_detections_file(tmp_path):
    """--val-boxes: the val persons are the detections at or above --box-threshold, not the ground-truth persons."""
    annotations = json.loads((MINI / "test_coco.json").read_text())["annotations"]
    kept = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9}
            for a in annotations if a["image_id"] in (785, 40083)]  # fmt: skip
    junk = [
        {"image_id": 197388, "category_id": 1, "bbox": [10.0 * i, 10.0, 50.0, 90.0], "score": 0.2} for i in range(3)
    ]
    boxes = tmp_path / "detections.json"
    boxes.write_text(json.dumps(kept + junk))
    done = run_cli(
        "--arch", "litehrnet-18", "--gene", "width=8", "--gene", "modules=[1,1,1]", "--data", MINI_DATA,
        "--input", "64x64", "--epochs", "1", "--batch", "4", "--val-boxes", str(boxes), "--box-threshold", "0.5",
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(kept) == 4 and f"12 train / {len(kept)} val persons" in done.stderr  # ground truth: 12 val persons
    assert "val 3 detections below score 0.5" in done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert f"val boxes {boxes} (score >= 0.5)" in summary["data"] and 0.0 <= summary["ap"] <= 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "100x96"], "multiples of 32"),
        (["--data", "nowhere"], "expected 'synthetic'"),
        (["--data", "missing.json:images"], "missing.json"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--gene", "block=hourglass"], "block"),
    ],
)
def test_train_cli_bad_input_is_a_clear_error(args, message):
    done = run_cli("--arch", "litehrnet-18", *args)
    assert done.returncode == 2
    assert message in done.stderr


def test_softmax_heatmaps_of_a_perfect_prediction_peak_at_one():
    from pose.losses import LOSSES
    from pose.targets import gaussian_heatmaps

    sigma = 1.5
    target, weights = gaussian_heatmaps(np.array([[10.3, 12.6]]), np.array([2]), (24, 32), sigma)
    target_t = torch.from_numpy(target)[None]
    logits = torch.log(target_t.clamp_min(1e-30))  # softmax(log g) = g / sum(g)
    heatmaps = LOSSES["softmax-ce"].to_heatmaps(logits, sigma)
    assert heatmaps.max().item() == pytest.approx(target.max(), rel=0.02)
    ce = LOSSES["softmax-ce"].loss
    w = torch.from_numpy(weights)[None]
    assert ce(logits, target_t, w) < ce(torch.zeros_like(logits), target_t, w)
    assert ce(torch.zeros_like(logits), target_t, torch.zeros_like(w)) == 0  # unlabelled joints teach nothing
