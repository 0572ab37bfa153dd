"""How well each search signal ranks architectures, against a ground truth made by `hrnas bench truth`.

hrnas fidelity --truth bench/truth.jsonl                     # every signal in bench/signals.jsonl, FLOPs, params
hrnas fidelity --truth bench/truth.jsonl --signal flops --signal one-shot --json
hrnas fidelity --truth my-truth.jsonl --signals my-signals.jsonl --plot fidelity.png

For each signal: Kendall tau and Spearman rho with bootstrap 95 % intervals, Kendall tau within FLOPs quintiles
(where counting cannot help), top-10 % overlap, the regret of its top pick and its CPU-seconds per genome; and the
seed ceiling (seed 0 against seed 1). The definitions are in fidelity/metrics.py and docs/fidelity.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from analysis.fidelity import PUBLISHED_COCO_AP, tau_against_published
from fidelity.measured import write_measured
from fidelity.report import build, plot, table
from fidelity.truth import read_sample
from hrnas.errors import Parser, run_command


def build_parser() -> Parser:
    p = Parser(prog="hrnas fidelity", description=__doc__)
    p.add_argument("--truth", required=True, help="truth JSONL written by `hrnas bench truth`")
    p.add_argument("--signals", default=None, help="signals JSONL (default: signals.jsonl beside the truth file)")
    p.add_argument("--signal", action="append", default=None, help="a signal to report (repeat; default: all)")
    p.add_argument("--plot", default=None, help="fidelity-versus-cost PNG (default: fidelity.png beside the truth)")
    p.add_argument(
        "--write-measured",
        default=None,
        metavar="JSON",
        help="also write the summary a search states (hrnas ships fidelity/measured.json, made from bench/truth.jsonl)",
    )
    p.add_argument("--json", action="store_true", help="last line: a JSON list, one object per signal + seed_ceiling")
    return p


def published_check(presets: dict[str, float]) -> dict | None:
    """Kendall tau of the presets' truth APs against their published COCO AP (None with fewer than two)."""
    scored = {name: ap for name, ap in presets.items() if name in PUBLISHED_COCO_AP}
    if len(scored) < 2:
        return None
    return {"presets": len(scored), "kendall_tau": tau_against_published(scored)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def job() -> list[dict]:
        truth = Path(args.truth)
        report = build(truth, Path(args.signals) if args.signals else None, args.signal)
        print(table(report))
        published = published_check(report.presets)
        if published is not None:
            print(f"the truth against the published COCO AP of {published['presets']} presets: Kendall tau "
                  f"{published['kendall_tau']:+.2f} (a check of the embedded task, not a goal)")  # fmt: skip
        where = plot(report, Path(args.plot) if args.plot else truth.with_name("fidelity.png"))
        print(f"plot: {where}")
        if args.write_measured:
            sample = read_sample(truth)
            print(
                f"summary for searches: {write_measured(report, sample.space, sample.data, Path(args.write_measured))}"
            )
        return report.to_json() + ([{"truth_vs_published_coco": published}] if published else [])

    return run_command(job, args.json)


if __name__ == "__main__":
    sys.exit(main())
