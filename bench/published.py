"""How closely each preset, loaded from an official-layout checkpoint, reproduces the official model's output.

python bench/published.py

For each preset (and the original HRNet layout) the official key list and output come from tests/data/official
(made from the authors' code by tools/official_fixtures.py); the weights are drawn again from each official key's
name (checkpoints.seeded), saved in the official layout, read by checkpoints.load and run in hrnas, in float64 and
float32. Relative error: the largest absolute difference over the largest absolute official output. The test
tolerances (tests/test_checkpoint_equivalence.py) are 1e-6 in float64, 1e-4 in float32 (5e-4 with dynamic kernels).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blocks.network import PoseNet  # noqa: E402
from checkpoints.load import load_into, read_weights  # noqa: E402
from checkpoints.seeded import seeded_input, seeded_state  # noqa: E402
from search_space.presets import load_preset  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "data" / "official"
CASES = ["naive-litehrnet-18", "wider-naive-litehrnet-18", "litehrnet-18", "litehrnet-30", "ditehrnet-18",
         "ditehrnet-30", "hrnet-w32", "hrnet-w32.original"]  # fmt: skip


def relative_errors(case: str, folder: Path) -> tuple[str, int, float, float]:
    keys = json.loads((FIXTURES / f"{case}.keys.json").read_text())["keys"]
    official = torch.from_numpy(np.load(FIXTURES / f"{case}.output.npy"))
    state = seeded_state({key: tuple(shape) for key, shape in keys})
    path = folder / f"{case}.pth"
    torch.save(state if case.endswith(".original") else {"state_dict": state}, path)
    genome = load_preset(case.split(".")[0])
    weights = read_weights(path, genome)
    errors = []
    for dtype in (torch.float64, torch.float32):
        model = PoseNet(genome.resolve()).to(dtype).eval()
        load_into(model, weights)
        with torch.no_grad():
            output = model(seeded_input().to(dtype)).double()
        errors.append(((output - official).abs().max() / official.abs().max()).item())
    return weights.layout, len(keys), errors[0], errors[1]


def main() -> None:
    torch.set_num_threads(1)
    start = time.perf_counter()
    print(f"{'preset':<26} {'layout':<9} {'tensors':>7}  {'float64 rel. err':>16}  {'float32 rel. err':>16}")
    with tempfile.TemporaryDirectory() as folder:
        for case in CASES:
            layout, tensors, f64, f32 = relative_errors(case, Path(folder))
            print(f"{case:<26} {layout:<9} {tensors:>7}  {f64:>16.1e}  {f32:>16.1e}")
    print(f"({time.perf_counter() - start:.0f} s; input 1x3x64x64, seeded weights, BatchNorm statistics far from 0/1)")


if __name__ == "__main__":
    main()
