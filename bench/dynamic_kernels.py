"""Dynamic kernel aggregation (blocks/dynamic.py KernelAggregation), forward + backward: fast vs official.

The shapes are those that occur in a network (default ditehrnet-18; found by running it once at batch 1 with hooks),
scaled to the training batch. For every distinct shape three variants run alternately on the same numbers:
- `reference`: the official formulation, one grouped conv over the (1, B*C, H, W) view of an NCHW input;
- `grouped-cl`: the official formulation on a channels-last input (as it would run inside a channels-last network:
  the reshape copies the input to NCHW, and the output stays NCHW);
- `fast`: the default formulation on a channels-last input, as in a network prepared by `prepare_for_training`
  (1x1 dense kernels as one batched matmul; other kernels as the grouped conv over a channels-last
  (1, B*C, H, W) view, output channels-last).
Each timed call is forward + backward with respect to the input, the attention and the K kernels. `calls` is how
often the shape runs per training step, `per step` the summed time of those calls.

python bench/dynamic_kernels.py                         # ditehrnet-18, 256x192 and 128x96, batch 32, 2 threads
python bench/dynamic_kernels.py --input 128x96 --reps 30 --json
python bench/dynamic_kernels.py --gene "kernels=[4,4,2,2]"      # branch 4's k3/k5/k7/k9 split convs made dynamic
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter

import torch

from blocks.dynamic import KernelAggregation
from blocks.network import PoseNet, keep_freed_memory
from search_space.complexity import parse_input_size
from search_space.genome import Genome, parse_gene_override
from search_space.presets import load_architecture


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="ditehrnet-18", help="preset or genome file (default ditehrnet-18)")
    parser.add_argument(
        "--gene",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a gene, e.g. kernels=[4,4,2,2] to make branch 4's k3..k9 split convs dynamic",
    )
    parser.add_argument("--input", action="append", default=[], help="HxW (repeatable; default 256x192 and 128x96)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--reps", type=int, default=20, help="timed forward+backward calls per formulation")
    parser.add_argument("--default-malloc", action="store_true", help="leave glibc malloc as it is")
    parser.add_argument("--json", action="store_true", help="print one JSON object per row instead of a table")
    return parser


def occurring_shapes(genome: Genome, input_hw: tuple[int, int]) -> Counter:
    """(in, out, kernel, stride, groups, K, H, W) of every KernelAggregation call in one forward pass."""
    model = PoseNet(genome.resolve()).eval()
    shapes: Counter = Counter()

    def hook(module: KernelAggregation, args: tuple, out: torch.Tensor) -> None:
        m = module
        shapes[
            (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.groups, m.num_kernels, *args[0].shape[-2:])
        ] += 1

    for m in model.modules():
        if isinstance(m, KernelAggregation):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.randn(1, 3, *input_hw))
    return shapes


CONFIGS = {  # name: (formulation, channels-last input)
    "reference": ("grouped", False),
    "grouped-cl": ("grouped", True),
    "fast": ("fast", True),
}


def make_call(shape: tuple, batch: int, formulation: str, channels_last: bool, seed: int = 0):
    in_c, out_c, k, stride, groups, num_kernels, height, width = shape
    torch.manual_seed(seed)
    agg = KernelAggregation(in_c, out_c, k, stride, groups, num_kernels)
    agg.formulation = formulation
    x = torch.randn(batch, in_c, height, width)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    attention = torch.rand(batch, num_kernels, requires_grad=True)
    with torch.no_grad():
        out = agg(x, attention)
    grad = torch.randn_like(out)

    def call() -> float:
        start = time.perf_counter()
        agg(x, attention).backward(grad)
        elapsed = time.perf_counter() - start
        x.grad = attention.grad = agg.weight.grad = None
        return elapsed

    return call


def describe(shape: tuple) -> str:
    in_c, out_c, k, stride, groups, num_kernels, height, width = shape
    kind = "dw" if groups == in_c == out_c else ("1x1" if k == 1 and groups == 1 else f"g{groups}")
    return f"{kind} {in_c}->{out_c} k{k} s{stride} K{num_kernels} @{height}x{width}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    malloc = "default" if args.default_malloc or not keep_freed_memory() else "keep-freed"
    sizes = [parse_input_size(s) for s in (args.input or ["256x192", "128x96"])]
    genome = load_architecture(args.arch).with_genes(dict(parse_gene_override(g) for g in args.gene))
    label = " ".join([args.arch, *args.gene])
    if not args.json:
        print(
            f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, malloc {malloc}, "
            "forward+backward, ms per call (median); reference = official grouped conv on an NCHW input, "
            "grouped-cl = the same on a channels-last input, fast = default formulation on a channels-last input"
        )
    for size in sizes:
        shapes = occurring_shapes(genome, size)
        totals = dict.fromkeys(CONFIGS, 0.0)
        if not args.json:
            print(f"\n{label} at {size[0]}x{size[1]}")
            print(
                f"{'shape':<34} {'calls':>5} {'reference':>10} {'grouped-cl':>10} {'fast':>8} {'ratio':>7} "
                f"{'per step ref/fast':>18}"
            )
        for shape, count in sorted(shapes.items(), key=lambda kv: (-kv[0][6] * kv[0][7], kv[0])):
            calls = {name: make_call(shape, args.batch, *config) for name, config in CONFIGS.items()}
            times: dict[str, list[float]] = {name: [] for name in calls}
            for call in calls.values():  # warm-up
                call(), call()
            for _ in range(args.reps):
                for name, call in calls.items():
                    times[name].append(call())
            med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
            for name in totals:
                totals[name] += med[name] * count
            row = {
                "arch": label,
                "input": f"{size[0]}x{size[1]}",
                "shape": describe(shape),
                "batch": args.batch,
                "calls_per_step": count,
                **{f"{name}_ms": med[name] for name in CONFIGS},
                **{f"{name}_min_ms": min(times[name]) * 1e3 for name in CONFIGS},
                "speedup": med["reference"] / med["fast"],
                "malloc": malloc,
            }
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                per_step = f"{med['reference'] * count:.1f}/{med['fast'] * count:.1f}"
                print(
                    f"{row['shape']:<34} {count:>5} {med['reference']:>10.2f} {med['grouped-cl']:>10.2f} "
                    f"{med['fast']:>8.2f} {row['speedup']:>6.2f}x {per_step:>18}",
                    flush=True,
                )
        total = {"arch": label, "input": f"{size[0]}x{size[1]}", "shape": "total per step", **totals}
        total["speedup"] = totals["reference"] / totals["fast"]
        if args.json:
            print(json.dumps(total))
        else:
            print(
                f"{'total per training step (ms)':<34} {'':>5} {totals['reference']:>10.1f} "
                f"{totals['grouped-cl']:>10.1f} {totals['fast']:>8.1f} {total['speedup']:>6.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
