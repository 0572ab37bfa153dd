"""Convert a checkpoint between hrnas's layout and the published ones, with the mmpose config that builds the network.

hrnas convert --arch litehrnet-18 --checkpoint runs/l18/checkpoint.pt --to mmpose0x --out litehrnet18_mmpose.pth
hrnas convert --arch hrnet-w32 --checkpoint pose_hrnet_w32_256x192.pth --to mmpose1x --out hrnet_w32_mmpose1x.pth
hrnas convert --arch litehrnet-30 --checkpoint litehrnet_30_coco_256x192.pth --to hrnas --out litehrnet30.pt

Reads every layout that `--checkpoint` takes elsewhere (hrnas's, mmpose 0.x and 1.x, the Lite-HRNet, Dite-HRNet and
original HRNet repositories'). `mmpose0x` is also the layout of the Lite-HRNet and Dite-HRNet repositories; the
original HRNet layout is read, not written. A genome that the official LiteHRNet, DiteHRNet or HRNet code cannot
build is refused for the official layouts, with the reason; beside an official file goes `<out>.config.py`, the
model part of an mmpose config that builds it (load the file with strict=True).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from blocks.network import PoseNet
from checkpoints.formats import FAMILY_TITLES, FORMATS, HEAD, family_of, to_official
from checkpoints.load import read_weights
from checkpoints.official_configs import CODE, backbone_config, head_config, inexpressible
from hrnas.errors import Parser, run_command
from hrnas.paths import check_writable
from pose.weights import save_checkpoint, save_state
from search_space.genome import Genome
from search_space.presets import add_architecture_arguments, architecture_from_args

TARGETS = ["hrnas"] + [name for name, fmt in FORMATS.items() if fmt.writable]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="hrnas convert", description=__doc__)
    add_architecture_arguments(p)
    p.add_argument("--checkpoint", required=True, help="the weights to convert, in any layout hrnas reads")
    p.add_argument("--to", required=True, choices=TARGETS, help="the layout to write")
    p.add_argument("--out", required=True, help="the file to write (and <out>.config.py beside an official one)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: convert(args))


def refuse_inexpressible(genome: Genome, to: str) -> str:
    """The official family that builds `genome`, or ValueError saying why none can (before any file is read)."""
    family = family_of(genome)
    reasons = inexpressible(genome, family)
    if reasons:
        raise ValueError(f"--to {to}: the official {CODE[family]} cannot build this genome ({'; '.join(reasons)}); "
                         "keep it in hrnas's layout (--to hrnas)")  # fmt: skip
    return family


def mmpose_config(genome: Genome, family: str, joints: int, to: str) -> str:
    model = "TopDown" if to == "mmpose0x" else "TopdownPoseEstimator"
    return (
        f"# written by hrnas convert: the network of {genome.canonical_line()}\n"
        f"model = dict(\n    type='{model}',\n    {backbone_config(genome, family)},\n    "
        f"{head_config(genome, joints, to)},\n)\n"
    )


def convert(args: argparse.Namespace) -> None:
    genome = architecture_from_args(args)
    family = refuse_inexpressible(genome, args.to) if args.to != "hrnas" else None
    out = check_writable(Path(args.out), "--out")
    weights = read_weights(Path(args.checkpoint), genome)
    head = weights.renamed.state.get(HEAD + "weight")
    joints = head.shape[0] if head is not None else 17
    expected = PoseNet(genome.resolve(joints)).state_dict()
    fitted = weights.fit(expected)  # strict; the tensors keep their values and dtype, in the network's order
    state = {name: fitted.state[name] for name in expected}
    print(f"read {weights.describe()}; {fitted.describe()}")
    if args.to == "hrnas":
        save_state(out, state, genome)
        print(f"{out}: hrnas layout, {len(state)} tensors")
        return
    config = mmpose_config(genome, family, joints, args.to)
    official = to_official(state, args.to, family)
    save_checkpoint(out, {"meta": {"hrnas_genome": genome.canonical_line(), "config": config}, "state_dict": official})
    config_path = out.with_name(out.name + ".config.py")
    config_path.write_text(config)
    title = f"{FORMATS[args.to].title} layout, {FAMILY_TITLES[family]} ({CODE[family]}) key names"
    print(f"{out}: {title}, {len(official)} tensors\n{config_path}: the model config that builds it")


if __name__ == "__main__":
    sys.exit(main())
