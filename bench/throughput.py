"""Training throughput (forward + backward + Adam step) of the presets: fast paths vs the reference.

For every architecture and input size two copies of the same network (same weights) are trained side by side:
- `fast`: `prepare_for_training(model)` (channels-last layout, fast dynamic-kernel formulation);
- `reference`: `prepare_for_training(model, fast=False)` (plain NCHW, the official grouped-conv formulation of
  the dynamic kernels, the plain concatenate-then-shuffle).
After the warm-up their timed iterations alternate (reference, fast, reference, ...), so that both columns see
the same machine load and the ratio is a same-run comparison. Images/s are computed from the median step time
(robust to a step slowed down by other processes); the JSON rows also hold the mean, the best and every step.

Unless --default-malloc, glibc malloc is first told to keep freed memory (`keep_freed_memory()`; process-wide, so
for both configurations): that removes the page faults of re-allocating the activations every step. Run once with
and once without it to see its effect.

python bench/throughput.py                                  # every preset, 256x192 and 128x96, batch 32
python bench/throughput.py --arch litehrnet-18 --arch ditehrnet-18 --input 128x96 --iters 5
python bench/throughput.py --skip-heavy --json              # without hrnet-w32; one JSON object per row
python bench/throughput.py --device cuda --amp bf16 --batch 64 --iters 20   # on a GPU (synchronised timing)

On a CUDA device every step ends with torch.cuda.synchronize(), so a step's time is its GPU time; the fast paths
are tuned for CPU (see pose.device.Device.fast) and the table shows whether they help there too.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from blocks.network import PoseNet, init_weights, keep_freed_memory, prepare_for_training, prepare_input
from pose.device import Device, resolve_device
from search_space.complexity import parse_input_size
from search_space.presets import PRESETS, load_architecture

HEAVY = {"hrnet-w32"}  # ~7 GFLOPs/img: fewer timed iterations (--heavy-iters), or --skip-heavy


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", action="append", default=[], help=f"preset or genome file (repeatable; default all: "
                        f"{', '.join(PRESETS)})")  # fmt: skip
    parser.add_argument("--input", action="append", default=[], help="HxW (repeatable; default 256x192 and 128x96)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per configuration (default 2)")
    parser.add_argument("--iters", type=int, default=3, help="timed iterations per configuration (default 3)")
    parser.add_argument("--heavy-iters", type=int, default=1, help="timed iterations for hrnet-w32 (default 1)")
    parser.add_argument("--skip-heavy", action="store_true", help="leave out hrnet-w32")
    parser.add_argument("--no-reference", action="store_true", help="time only the fast configuration")
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="leave glibc malloc as it is (default: keep_freed_memory(), for both configurations, see RESULTS.md)",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps or auto")
    parser.add_argument("--amp", default="off", help="autocast: off (default), bf16, fp16 (CUDA) or auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object per row instead of a table")
    parser.add_argument("--json-out", metavar="PATH", help="also append the JSON rows to this file")
    return parser


class Trainer:
    """One network copy with its own Adam, batch and random targets; `step()` is one timed training step."""

    def __init__(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, fast: bool, device: Device) -> None:
        self.model = prepare_for_training(model.to(device.device), fast=fast).train()
        self.x = prepare_input(x.to(device.device), fast=fast)
        self.target = target.to(device.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.scaler = device.grad_scaler()
        self.device = device
        self.times: list[float] = []

    def step(self, timed: bool = True) -> None:
        synchronize(self.device)
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        with self.device.autocast():
            output = self.model(self.x).float()
        loss = F.mse_loss(output, self.target)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        synchronize(self.device)
        if timed:
            self.times.append(time.perf_counter() - start)


def synchronize(device: Device) -> None:
    """Wait for the device's queued work, so that wall time is compute time (a no-op on CPU)."""
    if device.device.type == "cuda":
        torch.cuda.synchronize(device.device)


def measure(arch: str, input_hw: tuple[int, int], args: argparse.Namespace, device: Device) -> dict:
    torch.manual_seed(args.seed)
    base = init_weights(PoseNet(load_architecture(arch).resolve()))
    x = torch.randn(args.batch, 3, *input_hw)
    target = torch.randn(args.batch, base.spec.joints, input_hw[0] // 4, input_hw[1] // 4)
    configs = {"fast": Trainer(copy.deepcopy(base), x, target, True, device)}
    if not args.no_reference:
        configs["reference"] = Trainer(copy.deepcopy(base), x, target, False, device)
    order = [configs[name] for name in ("reference", "fast") if name in configs]
    load_before = os.getloadavg()[0]
    for _ in range(args.warmup):
        for trainer in order:
            trainer.step(timed=False)
    iters = args.heavy_iters if arch in HEAVY else args.iters
    for _ in range(iters):
        for trainer in order:
            trainer.step()
    row = {
        "arch": arch,
        "input": f"{input_hw[0]}x{input_hw[1]}",
        "batch": args.batch,
        "threads": args.threads,
        "device": str(device.device),
        "amp": device.amp_name,
        "iters": iters,
        "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    for name, trainer in configs.items():
        row[f"{name}_img_s"] = args.batch / statistics.median(trainer.times)
        row[f"{name}_mean_img_s"] = args.batch * len(trainer.times) / sum(trainer.times)
        row[f"{name}_best_img_s"] = args.batch / min(trainer.times)
        row[f"{name}_step_s"] = [round(t, 4) for t in trainer.times]
    if "reference" in configs:
        row["speedup"] = row["fast_img_s"] / row["reference_img_s"]
    return row


def gpu_name(device: Device) -> str:
    return f" ({torch.cuda.get_device_name(device.device)})" if device.device.type == "cuda" else ""


COLUMNS = (
    f"{'arch':<26} {'input':>8} {'iters':>5} {'fast':>8} {'reference':>10} {'ratio':>7}   "
    f"{'fast best':>9} {'ref best':>9}  {'load':>9}"
)


def format_row(row: dict) -> str:
    def cell(key: str, width: int) -> str:
        return f"{row[key]:>{width}.2f}" if key in row else f"{'-':>{width}}"

    ratio = f"{row['speedup']:>6.2f}x" if "speedup" in row else f"{'-':>7}"
    load = "{:.1f}->{:.1f}".format(*row["loadavg_1min"])
    return (
        f"{row['arch']:<26} {row['input']:>8} {row['iters']:>5} {cell('fast_img_s', 8)} {cell('reference_img_s', 10)} "
        f"{ratio}   {cell('fast_best_img_s', 9)} {cell('reference_best_img_s', 9)}  {load:>9}"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        device = resolve_device(args.device, args.amp)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    malloc = "default" if args.default_malloc or not keep_freed_memory() else "keep-freed"
    archs = args.arch or [a for a in PRESETS if not (args.skip_heavy and a in HEAVY)]
    sizes = [parse_input_size(s) for s in (args.input or ["256x192", "128x96"])]
    if not args.json:
        print(
            f"torch {torch.__version__} on {device.describe()}{gpu_name(device)}, {args.threads} threads, "
            f"batch {args.batch}, train mode, Adam step, MSE loss, "
            f"malloc {malloc}; images/s from the median timed step (best: the fastest step); "
            "load: 1-min load average before->after"
        )
        print(COLUMNS)
    for arch in archs:
        for size in sizes:
            row = measure(arch, size, args, device)
            row["malloc"] = malloc
            print(json.dumps(row) if args.json else format_row(row), flush=True)
            if args.json_out:
                with open(args.json_out, "a") as out:
                    out.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
