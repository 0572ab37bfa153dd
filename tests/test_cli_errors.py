"""The one error path of train, evaluate, complexity and export: one `error:` line, exit 2, before any work.

Output paths are checked like every other input: an unwritable `export --out` fails in seconds, not after the export.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hrnas.commands import complexity, evaluate, export, train
from hrnas.paths import check_writable

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "data" / "coco-mini"
ANN = MINI / "test_coco.json"


def hrnas(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """`hrnas ARGS` in a fresh process (the console command's module), and its wall time."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "hrnas.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    return done, time.perf_counter() - start


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    return lines[0]


@pytest.fixture()
def a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize("where", ["proc", "file-as-parent", "folder"])
def test_export_to_an_unwritable_place_fails_in_seconds(tmp_path, a_file, where):
    out = {"proc": Path("/proc/hrnas.onnx"), "file-as-parent": a_file / "deep" / "x.onnx", "folder": tmp_path}[where]
    done, seconds = hrnas("export", "--arch", "litehrnet-18", "--out", str(out))
    assert done.returncode == 2 and done.stdout == ""
    line = one_error_line(done.stderr)
    assert f"--out {out}" in line
    assert seconds < 20  # imports only: the export of litehrnet-18 alone takes longer than this on 2 cores
    assert list(tmp_path.iterdir()) == [a_file] and a_file.read_text() == "not a folder"  # nothing written


def test_train_out_that_is_a_file_fails_before_the_data_is_made(tmp_path, a_file):
    cache = tmp_path / "cache"
    done, _ = hrnas(
        "train", "--arch", "litehrnet-18", "--out", str(a_file), env=dict(os.environ, HRNAS_CACHE=str(cache))
    )
    assert done.returncode == 2
    assert "is a file, not a folder" in one_error_line(done.stderr)
    assert not cache.exists()  # the synthetic set was not generated


def test_unavailable_device_fails_before_the_data_is_made(tmp_path):
    cache = tmp_path / "cache"
    done, _ = hrnas(
        "train", "--arch", "litehrnet-18", "--device", "cuda:99", env=dict(os.environ, HRNAS_CACHE=str(cache))
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "--device cuda:99" in one_error_line(done.stderr)
    assert not cache.exists()  # the synthetic set was not generated


def test_check_writable_accepts_new_nested_paths_without_creating_them(tmp_path):
    out = tmp_path / "a" / "b" / "model.onnx"
    assert check_writable(out, "--out") == out
    assert check_writable(tmp_path / "new" / "run", "--out", folder=True) == tmp_path / "new" / "run"
    assert list(tmp_path.iterdir()) == []  # no folder made, no probe file left behind
    existing = tmp_path / "old.onnx"
    existing.write_bytes(b"x")
    assert check_writable(existing, "--out") == existing and existing.read_bytes() == b"x"


@pytest.mark.parametrize(
    ("command", "argv", "named"),
    [
        (complexity, ["--arch", "litehrnet-18", "--joints", "0"], "--joints 0"),
        (complexity, ["--arch", "litehrnet-18", "--gene", "kernels=9"], "gene kernels="),
        (export, ["--arch", "litehrnet-18", "--input", "100x96"], "100x96"),
        (train, ["--arch", "litehrnet-18", "--epochs", "0"], "--epochs must be at least 1"),
        (train, ["--arch", "litehrnet-18", "--data", str(ANN) + ":nowhere"], "nowhere"),
        (train, ["--arch", "litehrnet-18", "--val-boxes", "no-detections.json"], "no-detections.json"),
        (evaluate, ["--data", str(ANN), "--predictions", "missing.json"], "missing.json does not exist"),
        (train, ["--arch", "litehrnet-18", "--device", "tpu"], "--device 'tpu' is not a device"),
        (train, ["--arch", "litehrnet-18", "--device", "cuda:99"], "--device cuda:99: this machine has"),
        (train, ["--arch", "litehrnet-18", "--device", "mps"], "--device mps: this machine has no MPS"),
        (train, ["--arch", "litehrnet-18", "--device", "cpu", "--amp", "fp16"], "--amp fp16 needs a CUDA device"),
        *(
            [(train, ["--arch", "litehrnet-18", "--device", "cuda"], "--device cuda: this machine has no CUDA")]
            if not torch.cuda.is_available()
            else []
        ),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(capsys, command, argv, named):
    assert command.main(argv) == 2
    captured = capsys.readouterr()
    assert named in one_error_line(captured.err) and captured.out == ""


def test_unknown_option_is_one_error_line_too(capsys):
    with pytest.raises(SystemExit) as exit_info:
        complexity.main(["--arch", "litehrnet-18", "--bogus"])
    assert exit_info.value.code == 2
    assert "--bogus" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--budjet", "0.5G"], "unknown option --budjet; did you mean --budget?"),
        (["--budget", "-1G"], "write it --budget=VALUE"),
        (["--budget=-1G"], "cannot read budget '-1G'"),
        (["--budget=0G"], "must be positive: e.g. 0.5GFLOPs"),
    ],
)
def test_a_misspelt_option_or_a_negative_budget_is_one_line_that_says_what_to_do(capsys, argv, named):
    from hrnas.commands import search

    code = None
    try:
        code = search.main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 2
    assert named in one_error_line(capsys.readouterr().err)


def test_unknown_precision_is_one_error_line_too(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--arch", "litehrnet-18", "--amp", "fp8"])
    assert exit_info.value.code == 2
    assert "--amp: invalid choice: 'fp8'" in one_error_line(capsys.readouterr().err)


def test_evaluate_scores_ground_truth_as_ap_one_and_names_unknown_images(tmp_path, capsys):
    coco = json.loads(ANN.read_text())
    people = [a for a in coco["annotations"] if a["num_keypoints"] > 0]
    results = [{"image_id": a["image_id"], "keypoints": a["keypoints"], "score": 1.0} for a in people]
    predictions = tmp_path / "results.json"
    predictions.write_text(json.dumps(results))
    assert evaluate.main(["--data", str(ANN), "--predictions", str(predictions), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["ap"] == pytest.approx(1.0)

    predictions.write_text(json.dumps([{**results[0], "image_id": 123456789}]))
    assert evaluate.main(["--data", str(ANN), "--predictions", str(predictions)]) == 2
    assert "123456789" in one_error_line(capsys.readouterr().err)


def test_export_check_beyond_atol_is_exit_1_not_an_input_error(tmp_path, capsys):
    """The file is written and compared; a difference above --atol is a failed check (1), not bad input (2)."""
    out = tmp_path / "m.onnx"
    argv = ["--arch", "litehrnet-18", "--gene", "modules=[1,1,1]", "--input", "64x64", "--out", str(out), "--check"]
    assert export.main([*argv, "--atol", "1e-12"]) == 1
    captured = capsys.readouterr()
    assert "FAILED (> 1e-12)" in captured.out and captured.err == "" and out.is_file()
