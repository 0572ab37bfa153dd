"""Parameters and FLOPs of a preset or genome, in a named convention; its latency, measured and predicted.

hrnas complexity --arch litehrnet-18 --json
hrnas complexity --arch ditehrnet-18 --gene kernels=[1,1,1,1] --input 384x288
hrnas complexity --arch litehrnet-18 --latency                     # onnxruntime, CPU, batch 1, 1 thread
hrnas complexity --arch litehrnet-30 --latency --runtime torch --threads 2 --batch 4
hrnas complexity --fit-latency                                     # fit this machine's latency table (default space)
"""

from __future__ import annotations

import argparse
import sys

from hrnas.errors import Parser, run_command
from search_space.complexity import CONVENTIONS, format_flops, format_params, genome_complexity, parse_input_size
from search_space.latency import DEVICES, RUNTIMES, Setting, measure_latency, parse_setting
from search_space.presets import PRESETS, add_architecture_arguments, architecture_from_args, load_preset
from search_space.space import DEFAULT_SPACE, SearchSpace


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hrnas complexity", description=__doc__)
    add_architecture_arguments(parser, required=False)  # --fit-latency needs none
    parser.add_argument("--input", default="256x192", help="input size HxW (default 256x192)")
    parser.add_argument("--joints", type=int, default=17, help="keypoints / heatmaps (default 17)")
    parser.add_argument("--convention", default="torchstat", choices=list(CONVENTIONS))
    parser.add_argument(
        "--truncate",
        action="store_true",
        help="print the figure truncated (Dite-HRNet's habit) instead of rounded (Lite-HRNet's)",
    )
    latency = parser.add_argument_group("latency")
    latency.add_argument("--latency", action="store_true", help="also measure the latency (at --input, batch "
                         "--batch): warm-up, then the median of interleaved timed runs")  # fmt: skip
    latency.add_argument("--runtime", default="ort", help=f"{' | '.join(RUNTIMES)} (default ort: onnxruntime on the "
                         "exported ONNX file; torch: PyTorch eager, BatchNorm folded)")  # fmt: skip
    latency.add_argument("--device", default="cpu", help=f"{' | '.join(DEVICES)} (default cpu)")
    latency.add_argument("--batch", type=int, default=1, help="images per inference (default 1)")
    latency.add_argument("--threads", type=int, default=1, help="CPU threads of the runtime (default 1)")
    latency.add_argument("--seconds", type=float, default=3.0, help="timed seconds (default 3)")
    latency.add_argument("--fit-latency", action="store_true", help="fit this machine's latency table for the "
                         "setting on --space (cached; --latency then also predicts)")  # fmt: skip
    latency.add_argument("--space", default=str(DEFAULT_SPACE), help="--fit-latency: the space (default: default)")
    latency.add_argument("--fit-genomes", type=int, default=24, help="--fit-latency: genomes measured whole for "
                         "the correction (default 24; under 8, the correction is a scale alone)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: complexity(args), args.json)


def latency_setting(args: argparse.Namespace, input_hw: tuple[int, int]) -> Setting:
    if not args.seconds > 0:
        raise ValueError(f"--seconds {args.seconds}: give a positive time to measure for")
    return parse_setting(args.runtime, args.device, args.batch, args.threads, input_hw)


def fit_latency(args: argparse.Namespace) -> dict:
    """Fit and cache this machine's latency table for the setting, on genomes of --space."""
    from search_space.latency_table import fit_space

    setting = latency_setting(args, parse_input_size(args.input))
    if args.fit_genomes < 3:
        raise ValueError(f"--fit-genomes {args.fit_genomes}: the correction needs at least 3 genomes")
    space = SearchSpace.from_file(args.space)
    presets = {name: load_preset(name) for name in PRESETS}
    table, path = fit_space(
        space, setting, presets, args.fit_genomes, progress=lambda line: print(line, file=sys.stderr)
    )
    return {"table": str(path), "parts": len(table.parts), "fit_seconds": table.fit_seconds, "scale": table.scale,
            "offset_ms": table.offset_ms, "genomes": len(table.fitted_on), **table.setting.tags()}  # fmt: skip


def complexity(args: argparse.Namespace) -> dict:
    """Count, print the table (without --json) and return the record."""
    if args.fit_latency:
        return fit_latency(args)
    if args.arch is None:
        raise ValueError("--arch: give a preset or a genome file (or --fit-latency to fit a latency table)")
    genome = architecture_from_args(args)
    input_hw = parse_input_size(args.input)
    if args.joints < 1:
        raise ValueError(f"--joints {args.joints}: need at least one joint")
    setting = latency_setting(args, input_hw) if args.latency else None
    result = genome_complexity(genome, input_hw, args.joints)
    flops = result.flops[args.convention]
    printed = format_flops(flops, args.convention, truncate=args.truncate)
    record = {
        "arch": args.arch,
        "genome": genome.compact(),
        "params": result.params,
        "params_printed": format_params(result.params, truncate=args.truncate),
        "flops": flops,
        "flops_printed": printed,
        "convention": args.convention,
        "convention_rule": CONVENTIONS[args.convention].description,
        "input": f"{input_hw[0]}x{input_hw[1]}",
        "joints": args.joints,
        "all_conventions": result.flops,
        "torchstat_params": result.torchstat_params,
    }
    if setting is not None:
        record.update(latency_record(genome, setting, args.seconds, args.joints))
    if not args.json:
        print(f"{args.arch}  ({genome.compact()})")
        print(f"  input {record['input']}, {args.joints} joints")
        print(f"  params   {result.params:>15,}  ({record['params_printed']})")
        for name, value in result.flops.items():
            mark = "*" if name == args.convention else " "
            print(f" {mark}{name:<10} {value:>15,}  ({format_flops(value, name, truncate=args.truncate)})")
        print(f"  * {CONVENTIONS[args.convention].description}")
        if setting is not None:
            spread = f"interquartile range {record['latency_spread_ms']:.2f} ms over {record['latency_runs']} runs"
            print(f"  latency  {record['latency_ms']:.2f} ms median ({spread}; {setting.describe()})")
            predicted = record.get("predicted_latency_ms")
            print(f"  predicted {predicted:.2f} ms (this machine's latency table)" if predicted is not None else
                  "  predicted: no latency table for this setting here (hrnas complexity --fit-latency)")  # fmt: skip
    return record


def latency_record(genome, setting: Setting, seconds: float, joints: int) -> dict:
    """The measured latency and, where this machine has a table for the setting, the predicted one."""
    from search_space.latency_table import load_table, predict_latency

    measured = measure_latency(genome, setting, seconds, joints)
    record = {k: v for k, v in measured.as_dict().items() if k.startswith("latency_")}
    record.update(runtime=setting.runtime, device=setting.device, batch=setting.batch, threads=setting.threads)
    table = load_table(setting)
    if table is not None and joints == 17:
        record["predicted_latency_ms"] = predict_latency(table, genome)
    return record


if __name__ == "__main__":
    sys.exit(main())
