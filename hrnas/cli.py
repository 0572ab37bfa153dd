"""The `hrnas` console command: `hrnas SUBCOMMAND [options]`, one module per subcommand.

`python experiments/NAME.py ...` is the same as `hrnas NAME ...`: both call the subcommand's `main`.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module under hrnas.commands, one line for `hrnas --help`)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "search": ("search", "budgeted multi-objective architecture search on Ray Tune + Optuna, logged to MLflow"),
    "train": ("train", "short top-down COCO keypoint training of one genome, scored by COCOeval"),
    "evaluate": ("evaluate", "COCOeval (keypoints) of a predictions file"),
    "ablate": ("ablate", "the papers' ablation tables, rebuilt from genes and trained under one proxy recipe"),
    "report": ("report", "Pareto tables, plots and hypervolumes of searches, read back from MLflow"),
    "complexity": ("complexity", "exact parameters and FLOPs of a preset or genome in a named convention"),
    "export": ("export", "ONNX export of any genome, checked in onnxruntime"),
    "convert": ("convert", "checkpoints between hrnas's layout and mmpose's / the authors' (published weights)"),
    "supernet": ("supernet", "a weight-sharing supernet of a space: train it once, score any genome in seconds"),
    "space": ("space", "a search space's genome count, how many fit a budget, FLOPs range and presets"),
    "fidelity": ("fidelity", "how well each search signal ranks architectures, against a ground truth"),
    "bench": ("bench", "benchmarks of the search's signals: `bench truth` trains a ground truth of a space"),
}


def usage() -> str:
    lines = ["usage: hrnas SUBCOMMAND [options]   (hrnas SUBCOMMAND --help for its options)", "", "subcommands:"]
    lines += [f"  {name:<11} {text}" for name, (_, text) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def run_subcommand(name: str, argv: list[str]) -> int:
    module = importlib.import_module(f"hrnas.commands.{SUBCOMMANDS[name][0]}")
    return module.main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"error: unknown subcommand {name!r}; choose one of {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    return run_subcommand(name, rest)


if __name__ == "__main__":
    sys.exit(main())
