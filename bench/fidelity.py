"""How well each search signal hrnas offers ranks architectures: one table, one row per signal.

python bench/fidelity.py --measure trials-1 --seeds 0,1            # train the six presets, 1 epoch (search trial)
python bench/fidelity.py --measure trials-4 --seeds 0,1            # ... 4 epochs at the search's fidelity
python bench/fidelity.py --measure train-12 --seeds 0,1            # ... the train.py recipe (12 epochs)
python bench/fidelity.py --measure train-12 --presets ditehrnet-18,ditehrnet-30   # only some presets
python bench/fidelity.py --import-proxy-runs bench/proxy_runs.jsonl   # train-12 runs bench/proxy_accuracy.py made
python bench/fidelity.py --supernet runs/sn-s0 --supernet runs/sn-s1   # one-shot: supernet trainings' inherited AP
python bench/fidelity.py --report [--tracking-uri sqlite:///runs/mlflow.db]   # reprint (and log) the table

Every measurement is appended to a JSONL file (default bench/fidelity.jsonl: signal, preset, seed, AP, CPU
seconds), so the table reprints without retraining. Rows: each measured signal, and the FLOPs-only and params-only
baselines (exact, no training). Columns, over the six Lite/Dite presets:
- tau: Kendall tau-b of the signal's mean score over seeds against the published COCO AP;
- design ratio: ditehrnet-18's gain over naive-litehrnet-18 divided by wider-naive-litehrnet-18's gain over it
  (published 0.97): block design against 60 % more FLOPs, which FLOPs alone cannot see;
- gains > spread: whether both gains exceed the signal's seed spread;
- spread: the largest max - min over seeds of one preset's score;
- CPU s/genome: CPU-seconds (wall x threads) the signal spends on one genome.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

# Python puts this script's folder first on the path; bench/supernet.py would shadow the `supernet` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from analysis.fidelity import DESIGN, PUBLISHED_COCO_AP, design_ratio, tau_against_published  # noqa: E402
from nas.options import SEARCH_FIDELITY  # noqa: E402
from pose.train import Recipe, load_data, train  # noqa: E402
from search_space.complexity import genome_complexity  # noqa: E402
from search_space.presets import load_preset  # noqa: E402

PRESETS = list(PUBLISHED_COCO_AP)
TARGET_TAU = 0.73
RECIPES: dict[str, Recipe] = {  # the training signals `--measure` runs
    "trials-1": SEARCH_FIDELITY,
    "trials-4": replace(SEARCH_FIDELITY, epochs=4),
    "train-12": Recipe(),
}
DEFAULT_RESULTS = Path(__file__).resolve().parent / "fidelity.jsonl"


def measure(signal: str, seeds: list[int], results: Path, threads: int, presets: list[str]) -> None:
    data = load_data(None)
    total = len(seeds) * len(presets)
    for k, (seed, name) in enumerate((s, n) for s in seeds for n in presets):
        recipe = replace(RECIPES[signal], seed=seed, threads=threads)
        start = time.perf_counter()
        result = train(load_preset(name), data, recipe, quiet=True)
        seconds = time.perf_counter() - start
        record = {"signal": signal, "preset": name, "seed": seed, "ap": result["ap"], "cpu_seconds": seconds * threads}
        append(results, record)
        print(f"[{k + 1}/{total}] {signal} {name} seed {seed}: AP {result['ap']:.3f} in {seconds:.0f} s", flush=True)


def portable(path: Path) -> str:
    """A path as committed results may hold it: relative to the checkout, never the machine's absolute one."""
    resolved = path.resolve()
    root = Path(__file__).resolve().parents[1]
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else path.name


def from_supernets(folders: list[Path], results: Path) -> None:
    """One-shot records from supernet trainings: the last epoch's inherited AP of every preset. CPU-seconds per
    genome: the per-epoch scoring time over the genomes scored (the training is shared by the whole space)."""
    for folder in folders:
        result = json.loads((folder / "result.json").read_text())
        last = result["history"][-1]
        per_genome = last["eval_seconds"] / len(result["tracked"]) * 2  # the training's threads (2)
        for name in PRESETS:
            record = {"signal": f"one-shot ({result['epochs']} ep)", "preset": name, "seed": result["seed"],
                      "ap": last[f"ap.{name}"], "cpu_seconds": per_genome, "source": portable(folder)}  # fmt: skip
            append(results, record)
        print(f"one-shot: {folder} (seed {result['seed']}) recorded")


def from_proxy_runs(path: Path, results: Path) -> None:
    """train-12 records from `bench/proxy_accuracy.py` runs of exactly train.py's recipe (the same trainings
    `--measure train-12` makes; CPU-seconds: their wall time x their threads)."""
    wanted = json.loads(json.dumps(asdict(RECIPES["train-12"])))  # as proxy_accuracy.py keys a run (lists, dicts)
    for line in path.read_text().splitlines():
        run = json.loads(line)
        key = json.loads(run["recipe_key"])
        same = all(key.get(k) == wanted.get(k) for k in set(key) | set(wanted) if k not in {"seed", "threads"})
        if not same or run["arch"] not in PRESETS:
            continue
        record = {"signal": "train-12", "preset": run["arch"], "seed": run["seed"], "ap": run["ap"],
                  "cpu_seconds": run["wall_seconds"] * run["threads"], "source": portable(path)}  # fmt: skip
        append(results, record)
        print(f"train-12: {run['arch']} seed {run['seed']} (AP {run['ap']:.3f}) recorded from {path}")


def append(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def row(signal: str, scores: dict[int, dict[str, float]], cpu: float) -> dict:
    """The table's row of a signal from its per-seed scores of the six presets."""
    seeds = [s for s, by_preset in scores.items() if set(PRESETS) <= set(by_preset)]
    mean = {n: statistics.mean(scores[s][n] for s in seeds) for n in PRESETS}
    spread = max(max(scores[s][n] for s in seeds) - min(scores[s][n] for s in seeds) for n in PRESETS)
    base, design, wider = (mean[n] for n in DESIGN)
    gains = (design - base, wider - base)
    return {
        "signal": signal,
        "seeds": len(seeds),
        "tau": tau_against_published(mean),
        "ratio": design_ratio(mean),
        "gains_above_spread": len(seeds) > 1 and min(gains) > spread,
        "spread": spread if len(seeds) > 1 else float("nan"),
        "cpu_seconds": cpu,
    }


def table(results: Path) -> list[dict]:
    lines = results.read_text().splitlines() if results.is_file() else []
    records = [json.loads(line) for line in lines if line.strip()]
    rows = []
    for signal in dict.fromkeys(r["signal"] for r in records):
        mine = [r for r in records if r["signal"] == signal]
        scores: dict[int, dict[str, float]] = {}
        for r in mine:
            scores.setdefault(r["seed"], {})[r["preset"]] = r["ap"]
        if any(set(PRESETS) <= set(s) for s in scores.values()):
            rows.append(row(signal, scores, statistics.mean(r["cpu_seconds"] for r in mine)))
    for name, key in (("FLOPs only", "flops"), ("params only", "params")):
        start = time.perf_counter()
        counts = {n: genome_complexity(load_preset(n)) for n in PRESETS}
        cpu = (time.perf_counter() - start) / len(PRESETS)
        values = {n: float(c.flops["torchstat"] if key == "flops" else c.params) for n, c in counts.items()}
        rows.append(row(name, {0: values}, cpu))
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| signal | seeds | Kendall tau | design ratio (published 0.97) | gains > spread | spread | CPU s/genome |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        spread = "-" if r["spread"] != r["spread"] else f"{r['spread']:.3f}"
        above = "yes" if r["gains_above_spread"] else ("-" if r["seeds"] < 2 else "no")
        lines.append(f"| {r['signal']} | {r['seeds']} | {r['tau']:.2f} | {r['ratio']:.2f} | {above} | {spread} | "
                     f"{r['cpu_seconds']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def log_to_mlflow(uri: str, text: str, rows: list[dict]) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("hrnas-fidelity")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("hrnas-fidelity")
    run = client.create_run(experiment_id, run_name="fidelity table", tags={"kind": "fidelity"})
    for r in rows:
        client.log_metric(run.info.run_id, f"tau.{r['signal']}".replace(" ", "_").replace("(", "").replace(")", ""),
                          r["tau"])  # fmt: skip
    client.log_text(run.info.run_id, text, "fidelity.md")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--measure", choices=list(RECIPES), help="train the six presets with this signal's recipe")
    p.add_argument("--seeds", default="0", help="comma-separated seeds for --measure (default 0)")
    p.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets for --measure (default all)")
    p.add_argument("--import-proxy-runs", default=None, metavar="JSONL", help="record the train-12 runs of "
                   "bench/proxy_accuracy.py from this file")  # fmt: skip
    p.add_argument("--threads", type=int, default=1, help="torch threads of a --measure training (default 1)")
    p.add_argument("--supernet", action="append", default=[], help="a `supernet train` --out folder (per seed)")
    p.add_argument("--results", default=str(DEFAULT_RESULTS), help="the JSONL file of measurements")
    p.add_argument("--report", action="store_true", help="print the table (also after --measure/--supernet)")
    p.add_argument("--tracking-uri", default=None, help="also log the table to this MLflow store")
    args = p.parse_args(argv)
    results = Path(args.results)
    if args.measure:
        presets = args.presets.split(",")
        unknown = sorted(set(presets) - set(PRESETS))
        if unknown:
            p.error(f"--presets: {', '.join(unknown)} are not among {', '.join(PRESETS)}")
        measure(args.measure, [int(s) for s in args.seeds.split(",")], results, args.threads, presets)
    if args.import_proxy_runs:
        from_proxy_runs(Path(args.import_proxy_runs), results)
    if args.supernet:
        from_supernets([Path(f) for f in args.supernet], results)
    rows = table(results)
    text = markdown(rows)
    print(text)
    best = max((r for r in rows if r["signal"] not in {"FLOPs only", "params only"}), key=lambda r: r["tau"],
               default=None)  # fmt: skip
    if best is not None:
        verdict = "PASS" if best["tau"] >= TARGET_TAU else "FAIL"
        print(f"\nbest measured signal: {best['signal']} (tau {best['tau']:.2f}; target >= {TARGET_TAU}: {verdict})")
    if args.tracking_uri:
        print(f"logged to MLflow run {log_to_mlflow(args.tracking_uri, text, rows)}")


if __name__ == "__main__":
    main()
