"""How well the per-part latency table predicts measured latency, and how stable a measurement is.

python bench/latency.py                         # onnxruntime, CPU, batch 1, 1 thread, the default space
python bench/latency.py --runtime torch --threads 2
python bench/latency.py --presets               # the presets only: FLOPs against latency on both runtimes

1. Fits this machine's table from scratch on the default space (its presets, then random genomes): the time it
   takes (target: at most 10 minutes).
2. Draws --test genomes the table was not fitted on, predicts each (timing the parts the table lacks first) and
   measures it, interleaved in rounds: Spearman's rank correlation (target >= 0.9) and the median relative error
   (target <= 15 %); the time a prediction takes once its parts are in the table (target <= 50 ms).
3. Measures one genome twice, as two invocations of `hrnas complexity --latency` would: how far apart they land.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

# Python puts this script's folder first on the path; bench/supernet.py would shadow the `supernet` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from scipy.stats import spearmanr  # noqa: E402

from search_space.complexity import genome_complexity  # noqa: E402
from search_space.latency import measure_latencies, measure_latency, parse_setting  # noqa: E402
from search_space.latency_table import fit_space, predict_latency, random_genomes, table_path  # noqa: E402
from search_space.presets import PRESETS, load_preset  # noqa: E402
from search_space.space import DEFAULT_SPACE, SearchSpace  # noqa: E402

TARGETS = {"spearman": 0.9, "median_error": 0.15, "fit_seconds": 600, "predict_ms": 50}


def say(line: str) -> None:
    print(line, flush=True)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def predictor(args: argparse.Namespace, setting) -> dict:
    space = SearchSpace.from_file(args.space)
    path = table_path(setting)
    path.unlink(missing_ok=True)  # fitted from scratch: the time is the whole fit's
    presets = {name: load_preset(name) for name in PRESETS}
    table, _ = fit_space(space, setting, presets, args.fit, progress=say)
    test = random_genomes(space, args.test, seed=1000 + args.seed, exclude=table.fitted_on)
    say(f"predicting {len(test)} genomes the table was not fitted on (timing the parts it lacks) ...")
    before = len(table.parts)
    predicted = {g.compact(): predict_latency(table, g) for g in test}
    added = len(table.parts) - before
    start = time.perf_counter()
    for g in test:
        table.predict(g)
    predict_ms = (time.perf_counter() - start) / len(test) * 1000
    say(f"measuring them, interleaved ({args.seconds:g} s each) ...")
    measured = {
        k: v.median_ms for k, v in measure_latencies({g.compact(): g for g in test}, setting, args.seconds).items()
    }
    keys = list(predicted)
    rho = spearmanr([predicted[k] for k in keys], [measured[k] for k in keys]).statistic
    errors = [abs(predicted[k] - measured[k]) / measured[k] for k in keys]
    error = statistics.median(errors)
    flops = {k: genome_complexity(g).flops["torchstat"] for k, g in zip(keys, test, strict=True)}
    rho_flops = spearmanr([flops[k] for k in keys], [measured[k] for k in keys]).statistic
    say(f"\n{setting.describe()}; table: {len(table.parts)} parts ({added} timed at prediction), fitted in "
        f"{table.fit_seconds:.0f} s on {len(table.fitted_on)} genomes")  # fmt: skip
    say(f"  Spearman(predicted, measured) over {len(keys)} unseen genomes: {rho:.3f} (target >= "
        f"{TARGETS['spearman']}: {verdict(rho >= TARGETS['spearman'])}); FLOPs alone: {rho_flops:.3f}")  # fmt: skip
    say(f"  median relative error: {error:.1%} (target <= {TARGETS['median_error']:.0%}: "
        f"{verdict(error <= TARGETS['median_error'])}); largest {max(errors):.1%}")  # fmt: skip
    say(f"  fit: {table.fit_seconds:.0f} s (target <= {TARGETS['fit_seconds']} s: "
        f"{verdict(table.fit_seconds <= TARGETS['fit_seconds'])}); a prediction from the table: {predict_ms:.1f} ms "
        f"(target <= {TARGETS['predict_ms']} ms: {verdict(predict_ms <= TARGETS['predict_ms'])})")  # fmt: skip
    say(f"  measured range {min(measured.values()):.1f}-{max(measured.values()):.1f} ms")
    return {
        "setting": setting.describe(),
        "spearman": rho,
        "spearman_flops": rho_flops,
        "median_error": error,
        "max_error": max(errors),
        "fit_seconds": table.fit_seconds,
        "predict_ms": predict_ms,
        "parts": len(table.parts),
        "pairs": [[k, predicted[k], measured[k]] for k in keys],
    }


def stability(setting, seconds: float) -> dict:
    """One genome measured as two separate invocations would (each its own export and session)."""
    genome = load_preset("litehrnet-18")
    first, second = (measure_latency(genome, setting, seconds).median_ms for _ in range(2))
    apart = abs(first - second) / min(first, second)
    say(f"\ntwo invocations on litehrnet-18: {first:.2f} and {second:.2f} ms, {apart:.1%} apart")
    return {"first_ms": first, "second_ms": second, "apart": apart}


def presets_table(args: argparse.Namespace) -> None:
    """Every preset: FLOPs, and latency on both runtimes at 1 and 2 threads, all measured interleaved."""
    genomes = {name: load_preset(name) for name in PRESETS}
    flops = {name: genome_complexity(g).flops["torchstat"] / 2**20 for name, g in genomes.items()}
    columns = {}
    for runtime in ("ort", "torch"):
        for threads in (1, 2):
            setting = parse_setting(runtime, "cpu", 1, threads)
            say(f"measuring the presets: {setting.describe()} ...")
            columns[(runtime, threads)] = measure_latencies(genomes, setting, args.seconds)

    def ranks(values: dict[str, float]) -> dict[str, int]:
        return {name: i + 1 for i, name in enumerate(sorted(values, key=values.get))}

    flops_rank = ranks(flops)
    head = "| preset | FLOPs (M) | rank |" + "".join(f" {rt} {t}T ms | rank |" for rt, t in columns)
    say("\n" + head + "\n|---|---:|---:|" + "---:|---:|" * len(columns))
    for name in genomes:
        cells = f"| {name} | {flops[name]:.1f} | {flops_rank[name]} |"
        for measured in columns.values():
            median = {n: m.median_ms for n, m in measured.items()}
            cells += f" {median[name]:.1f} ± {measured[name].spread_ms / 2:.1f} | {ranks(median)[name]} |"
        say(cells)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runtime", default="ort")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--space", default=str(DEFAULT_SPACE))
    p.add_argument("--fit", type=int, default=24, help="genomes the table's correction is fitted on (default 24)")
    p.add_argument("--test", type=int, default=30, help="unseen genomes to validate on (default 30)")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per genome (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--presets", action="store_true", help="only the presets' FLOPs/latency table")
    p.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    if args.presets:
        presets_table(args)
        return
    setting = parse_setting(args.runtime, "cpu", 1, args.threads)
    result = {**predictor(args, setting), "stability": stability(setting, args.seconds)}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
