"""Export a preset or genome to ONNX (batch of 1, fixed input size), optionally checked in onnxruntime.

hrnas export --arch litehrnet-18 --out litehrnet-18.onnx --check
hrnas export --arch litehrnet-18 --gene cross=dcm --gene within=gcm --input 128x96 --check
hrnas export --arch genome.yaml --exporter dynamo --opset 18
hrnas export --arch litehrnet-18 --checkpoint runs/l18/checkpoint.pt --input 256x192   # trained weights
hrnas export --run 3f2a... --storage runs            # a search trial's trained network (the front's are kept)

The default exporter is the TorchScript one (`torch.onnx.export(..., dynamo=False)`): it exports every genome
and is several times faster than the torch.export-based one (`--exporter dynamo`), which also works.
The batch axis is fixed: Dite-HRNet's dynamic kernels run as one grouped conv whose group count is
batch x channels, an attribute that ONNX cannot leave symbolic.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from blocks.network import PoseNet, init_weights
from blocks.onnx_export import OPSETS, export_onnx
from checkpoints.load import load_into, read_weights
from hrnas.errors import Parser, run_command
from hrnas.paths import check_writable
from search_space.complexity import parse_input_size
from search_space.genome import Genome
from search_space.presets import PRESETS, add_architecture_arguments, architecture_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hrnas export", description=__doc__)
    add_architecture_arguments(parser, required=False)
    parser.add_argument("--run", default=None, help="a search trial's MLflow run id: its genome and trained weights")
    parser.add_argument("--trial", default=None, help="a search trial's id (as the front table shows it), instead")
    parser.add_argument("--storage", default="runs", help="folder of the search's MLflow store (default runs)")
    parser.add_argument("--tracking-uri", default=None, help="the search's MLflow tracking URI (default: --storage's)")
    parser.add_argument("--input", default="256x192", help="input size HxW (default 256x192)")
    parser.add_argument("--joints", type=int, default=17, help="keypoints / heatmaps (default 17)")
    parser.add_argument("--out", help="output .onnx path (default <arch>-<H>x<W>.onnx in the current directory)")
    parser.add_argument(
        "--exporter",
        default="torchscript",
        choices=list(OPSETS),
        help="torch.onnx.export path: torchscript (dynamo=False, default) or dynamo (torch.export-based)",
    )
    parser.add_argument(
        "--opset",
        type=int,
        help="ONNX opset ("
        + ", ".join(f"{name} {lo}-{hi}, default {default}" for name, (lo, hi, default) in OPSETS.items())
        + ")",
    )
    parser.add_argument(
        "--init",
        default="random",
        choices=["random", "official"],
        help="weights: PyTorch's default init with the final conv scaled to heatmaps of order 1 (default; makes "
        "--check meaningful), or the official init_weights (conv N(0, 0.001): heatmaps near 1e-15)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and of the --check input")
    parser.add_argument(
        "--checkpoint",
        help="trained weights of the same --arch: the checkpoint.pt of `hrnas train --out` (from any device) or a "
        "published checkpoint (mmpose 0.x/1.x, the Lite-HRNet, Dite-HRNet or original HRNet repository's)",
    )
    parser.add_argument(
        "--allow-partial", action="store_true", help="load the checkpoint's tensors that fit, list the others"
    )
    parser.add_argument("--check", action="store_true", help="run the file in onnxruntime and compare with PyTorch")
    parser.add_argument("--atol", type=float, default=1e-4, help="--check fails (exit 1) above this max abs diff")
    return parser


def default_out(arch: str, input_hw: tuple[int, int]) -> Path:
    name = arch if arch in PRESETS else Path(arch).stem if "=" not in arch else "genome"
    return Path(f"{name}-{input_hw[0]}x{input_hw[1]}.onnx")


def build_model(
    genome: Genome, joints: int, input_hw: tuple[int, int], init: str = "random", seed: int = 0
) -> nn.Module:
    """The eval-mode network with the official init, or random weights and heatmaps of order 1.

    `random`: PyTorch's default init, then the final 1x1 conv divided by the largest heatmap value on a random
    input. Untouched, the deeper presets put out values in the hundreds (ditehrnet-30), where float32 rounding
    alone exceeds a 1e-4 absolute comparison; trained heatmaps peak near 1.
    """
    torch.manual_seed(seed)
    model = PoseNet(genome.resolve(joints)).eval()
    if init == "official":
        return init_weights(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        peak = model(torch.randn(1, 3, *input_hw, generator=generator)).abs().max()
        final = model.keypoint_head.final_layer
        final.weight /= peak
        final.bias /= peak
    return model


def describe(path: Path) -> list[tuple[str, str, list[int | str], str]]:
    """(role, name, shape, element type) of every graph input and output of an ONNX file."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    rows = []
    for role, values in (("input", graph.input), ("output", graph.output)):
        for v in values:
            dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]
            rows.append((role, v.name, dims, onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name))
    return rows


def run_onnxruntime(path: Path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def max_abs_diff(model: nn.Module, path: Path, x: torch.Tensor) -> tuple[float, float]:
    """Max abs difference between onnxruntime and PyTorch on `x`, and the max abs PyTorch output (its scale)."""
    with torch.no_grad():
        expected = model(x).numpy()
    got = run_onnxruntime(path, x)
    if got.shape != expected.shape:
        raise AssertionError(f"onnxruntime output shape {got.shape} != PyTorch {expected.shape}")
    return float(np.abs(got - expected).max()), float(np.abs(expected).max())


class CheckFailed(Exception):
    """onnxruntime and PyTorch disagree beyond --atol: the export ran, its result is wrong (exit 1, not 2)."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_command(lambda: export_command(args))
    except CheckFailed:
        return 1


def from_run(args: argparse.Namespace) -> tuple[Genome, Path, str]:
    """--run / --trial: the trial's genome, its kept weights and a name for the default --out."""
    from mlflow.tracking import MlflowClient

    from analysis.runs import trained_run
    from nas.options import local_store

    client = MlflowClient(args.tracking_uri or local_store(args.storage))
    run = trained_run(client, args.run, args.trial)
    if run.checkpoint is None or not run.checkpoint.is_file():
        raise ValueError(
            f"run {run.run_id} kept no trained weights: a search keeps its front's (and its best K with "
            "--keep-checkpoints K); train it again with `hrnas train --arch GENOME.yaml` and export that"
        )
    print(f"run {run.run_id}: {run.genome}\n  weights {run.checkpoint}")
    return Genome.from_compact(run.genome), run.checkpoint, f"run-{run.run_id[:8]}"


def export_command(args: argparse.Namespace) -> None:
    """Check every input and the output path, then export, describe the file and (--check) compare."""
    given = [name for name in ("arch", "run", "trial") if getattr(args, name)]
    if len(given) != 1:
        raise ValueError("give one of --arch (a preset or genome file), --run RUN_ID or --trial TRIAL_ID")
    if args.run or args.trial:
        genome, checkpoint, name = from_run(args)
    else:
        genome, checkpoint, name = architecture_from_args(args), args.checkpoint, args.arch
    input_hw = parse_input_size(args.input)
    if args.joints < 1:
        raise ValueError(f"--joints {args.joints}: need at least one joint")
    low, high, _ = OPSETS[args.exporter]
    if args.opset is not None and not low <= args.opset <= high:
        raise ValueError(f"--opset {args.opset}: the {args.exporter} exporter writes opsets {low}-{high}")
    if args.check and importlib.util.find_spec("onnxruntime") is None:
        raise ValueError("--check runs the file in onnxruntime, which is not installed: pip install onnxruntime")
    weights = read_weights(Path(checkpoint), genome) if checkpoint else None
    out = check_writable(Path(args.out) if args.out else default_out(name, input_hw), "--out")
    out.parent.mkdir(parents=True, exist_ok=True)
    if weights is None:
        print(f"weights: random ({args.init} initialisation): no --checkpoint or --run, so the file holds the "
              "network's structure, not trained weights")  # fmt: skip

    model = build_model(genome, args.joints, input_hw, args.init, args.seed)
    if weights is not None:
        fitted = load_into(model, weights, args.allow_partial)
        print(f"weights: {weights.describe()}\n  {fitted.describe()}")
    # Not zeros: with the official init a zero image drives activations into float32 denormals (~80x slower).
    example = torch.randn(1, 3, *input_hw, generator=torch.Generator().manual_seed(args.seed))
    export_onnx(model, example, out, args.exporter, args.opset)
    opset = args.opset or OPSETS[args.exporter][2]
    print(f"{out}  ({args.exporter} exporter, opset {opset}, {out.stat().st_size / 2**20:.1f} MiB)")
    print(f"  {genome.compact()}")
    for role, name, shape, dtype in describe(out):
        print(f"  {role:<6} {name:<9} {shape} {dtype}")
    if args.check:
        generator = torch.Generator().manual_seed(args.seed + 1)  # not the input that scaled the weights
        x = torch.randn(1, 3, *input_hw, generator=generator)
        diff, scale = max_abs_diff(model, out, x)
        verdict = "ok" if diff <= args.atol else f"FAILED (> {args.atol:g})"
        print(f"  check  onnxruntime vs PyTorch: max abs diff {diff:.3g} (outputs up to {scale:.3g}) {verdict}")
        if diff > args.atol:
            raise CheckFailed(out)


if __name__ == "__main__":
    sys.exit(main())
