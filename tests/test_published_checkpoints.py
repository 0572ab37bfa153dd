"""Published checkpoints through the commands: `export --checkpoint` gives the official model's output in
onnxruntime, `train --init-from` fine-tunes from one (partly with --allow-partial), and every bad file is one line
with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from checkpoints.seeded import seeded_input
from hrnas.commands import export as export_command
from hrnas.commands import train as train_command
from tests.test_checkpoint_equivalence import FLOAT32_TOLERANCE, PRESETS, official_state, relative_error

MINI = Path(__file__).parent / "data" / "coco-mini"
MINI_DATA = f"{MINI / 'test_coco.json'}:{MINI}"
FIXTURES = Path(__file__).parent / "data" / "official"


def mmpose_file(tmp_path: Path, preset: str, **changes) -> Path:
    state = official_state(preset)
    state.update(changes)
    path = tmp_path / f"{preset}.pth"
    torch.save({"meta": {"epoch": np.int64(210)}, "state_dict": state}, path)
    return path


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("preset", PRESETS)
def test_export_from_published_weights_matches_the_official_output(preset, tmp_path, capsys):
    import onnxruntime

    out = tmp_path / f"{preset}.onnx"
    args = ["--arch", preset, "--checkpoint", str(mmpose_file(tmp_path, preset)), "--input", "64x64"]
    assert export_command.main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mmpose 0.x" in printed and "skipped metadata of classes numpy" in printed
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {session.get_inputs()[0].name: seeded_input().float().numpy()})
    tolerance = FLOAT32_TOLERANCE.get(preset, 1e-4)
    assert relative_error(torch.from_numpy(output), np.load(FIXTURES / f"{preset}.output.npy")) <= tolerance


def test_another_genome_sharing_some_shapes_loads_partly(tmp_path, capsys):
    out = tmp_path / "l30.onnx"
    l18 = str(mmpose_file(tmp_path, "litehrnet-18"))
    argv = ["--arch", "litehrnet-30", "--checkpoint", l18, "--input", "64x64", "--out", str(out), "--allow-partial"]
    assert export_command.main(argv) == 0
    printed = capsys.readouterr().out
    assert "loaded 1418 tensors; 942 keep their initialisation (stages.0.2." in printed


class NeedsCode(torch.Tensor):
    """A tensor subclass: unpickling it would run this class's code."""


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, list[str], str]]:
    """Each bad input: the file, extra export options, and what its error line must say."""
    whole = mmpose_file(tmp_path, "litehrnet-18")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    code = tmp_path / "code.pth"
    torch.save({"state_dict": {"w": torch.ones(2).as_subclass(NeedsCode)}}, code)
    return {
        "another preset": (mmpose_file(tmp_path, "litehrnet-30"), [], "unexpected (backbone.stage"),
        "another joint count": (whole, ["--joints", "16"], "keypoint_head.final_layer.weight (17, 40, 1, 1) where"),
        "truncated": (truncated, [], "truncated or damaged"),
        "not a checkpoint": (text, [], "not a PyTorch checkpoint"),
        "weights need code": (code, [], "need code to unpickle (tests.test_published_checkpoints.NeedsCode"),
        "missing": (tmp_path / "absent.pth", [], "no such file"),
    }


def test_bad_checkpoints_are_one_line_and_exit_2(tmp_path, capsys):
    for case, (path, extra, says) in bad_files(tmp_path).items():
        out = tmp_path / f"{case}.onnx"
        code = export_command.main(["--arch", "litehrnet-18", "--checkpoint", str(path), *extra, "--out", str(out)])
        line = one_error_line(capsys)
        assert code == 2, case
        assert "--checkpoint" in line and says in line, (case, line)
        assert not out.exists(), case


TRAIN = ["--data", MINI_DATA, "--input", "64x64", "--batch", "4", "--max-steps", "2", "--threads", "1", "--epochs", "1"]


def test_train_init_from_published_weights_and_partially_from_another_joint_count(tmp_path, capsys):
    args = ["--arch", "litehrnet-18", *TRAIN, "--lr", "0", "--json"]
    assert train_command.main([*args, "--init-from", str(mmpose_file(tmp_path, "litehrnet-18"))]) == 0
    captured = capsys.readouterr()
    assert "loaded 1418 tensors" in captured.err
    tuned = json.loads(captured.out.strip().splitlines()[-1])

    head = {"keypoint_head.final_layer.weight": torch.randn(16, 40, 1, 1, dtype=torch.float64)}
    (tmp_path / "16").mkdir()
    sixteen = mmpose_file(tmp_path / "16", "litehrnet-18", **head)
    assert train_command.main([*args, "--init-from", str(sixteen)]) == 2
    assert "--allow-partial" in one_error_line(capsys)
    assert train_command.main([*args, "--init-from", str(sixteen), "--allow-partial"]) == 0
    captured = capsys.readouterr()
    assert "loaded 1417 tensors; 1 keep their initialisation (keypoint_head.final_layer.weight)" in captured.err
    partial = json.loads(captured.out.strip().splitlines()[-1])
    assert partial["loss"] != pytest.approx(tuned["loss"], rel=1e-6)  # the head's weight is not the file's
