"""Write `hrnas convert --to mmpose0x` files of non-preset genomes, for tools/official_fixtures.py --converted to load
into the official code with strict=True (in its scratch environment) and record the official output.

python tools/convert_cases.py --out /tmp/converted     # in the project's environment

Each case's weights are `checkpoints.seeded` tensors drawn by hrnas's key names (tests draw them again), saved as a
bare hrnas state dict and converted by the `hrnas convert` command itself; the folder gets `<case>.pth`,
`<case>.pth.config.py` and `<case>.genome` (the genome's canonical line).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from blocks.network import PoseNet
from checkpoints.seeded import seeded_state
from hrnas.commands import convert as convert_command
from search_space.genome import Genome

# other widths, depths and module counts of each official family, and Lite-HRNet's per-stage module types and ratios
CASES: dict[str, str] = {
    "lite-hybrid": "stem=lite width=24 modules=1,2,1 blocks=1 block=shuffle/weighting/weighting cross=crw within=sw "
    "cross_ratio=4 within_ratio=4 dsc_groups=1 kernels=1 fuse=official transition=dw head=iterative",
    "dite-small": "stem=dite width=24 modules=1,1,1 blocks=1 block=weighting cross=dcm within=gcm cross_ratio=8 "
    "within_ratio=4,4,8,8 dsc_groups=1,1,2,4 kernels=4,4,2,1 fuse=official-relu transition=dw head=iterative",
    "hrnet-w16": "stem=hrnet width=16 modules=1,1,1 blocks=2 block=residual cross=none within=none fuse=sum "
    "transition=conv head=simple",
}


def write_case(name: str, line: str, out: Path) -> None:
    genome = Genome.from_compact(line)
    shapes = {k: tuple(v.shape) for k, v in PoseNet(genome.resolve()).state_dict().items()}
    source = out / f"{name}.hrnas.pth"
    torch.save(seeded_state(shapes), source)
    (out / f"{name}.genome").write_text(genome.canonical_line() + "\n")
    argv = ["--arch", str(out / f"{name}.genome.yaml"), "--checkpoint", str(source), "--to", "mmpose0x"]
    (out / f"{name}.genome.yaml").write_text(genome.to_yaml())
    assert convert_command.main([*argv, "--out", str(out / f"{name}.pth")]) == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, line in CASES.items():
        write_case(name, line, args.out)


if __name__ == "__main__":
    main()
