"""The Pareto table and plot of searches, rebuilt from MLflow, and their hypervolumes side by side.

python experiments/report.py                                   # the searches in runs/mlflow.db, experiment hrnas-search
python experiments/report.py --experiment hrnas-search --last 2 --out report/
python experiments/report.py --tracking-uri http://127.0.0.1:5000 --run PARENT_RUN_ID --run OTHER_ID --json

Hypervolume is normalised (1.0 = AP 1 at zero FLOPs) against AP 0 and the search's own budget; the
`hypervolume_common` column uses the largest budget among the searches shown, so searches with different budgets
compare on one scale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from analysis.runs import (
    Search,
    compare_hypervolumes,
    find_searches,
    load_search,
    pareto_rows,
    write_search_report,
)
from analysis.tables import to_terminal, write_tables
from hrnas.errors import Parser, run_command
from nas.front import print_front
from nas.options import local_store

COMPARE_COLUMNS = ["search", "status", "budget", "trials", "eligible", "front", "best_ap", "hypervolume",
                   "hypervolume_common", "run_id"]  # fmt: skip


def build_parser() -> Parser:
    p = Parser(prog="hrnas report", description=__doc__)
    p.add_argument("--experiment", action="append", default=[], help="MLflow experiment(s) holding the searches "
                   "(repeatable; default hrnas-search)")  # fmt: skip
    p.add_argument("--run", action="append", default=[], help="parent run id of a search (repeatable); instead of "
                   "the searches of --experiment")  # fmt: skip
    p.add_argument("--last", type=int, default=2, help="report the last N searches of the experiments (default 2)")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default sqlite:///<storage>/mlflow.db)")
    p.add_argument("--storage", default="runs", help="folder of the default local store (default runs)")
    p.add_argument("--out", default=None, help="folder for the tables and plots (default <storage>/report)")
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    return p


def select(client: MlflowClient, args: argparse.Namespace) -> list[Search]:
    if args.run:
        return [load_search(client, run_id) for run_id in args.run]
    found: list[Search] = []
    for experiment in args.experiment or ["hrnas-search"]:
        found.extend(find_searches(client, experiment))
    found.sort(key=lambda s: s.parent.info.start_time)
    if not found:
        raise ValueError("no search in the given experiments; run `python experiments/search.py --budget ...` first")
    return found[-args.last :]


def open_store(args: argparse.Namespace) -> MlflowClient:
    uri = args.tracking_uri or local_store(args.storage)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ValueError(f"no MLflow store at {uri}; run a search first, or pass --tracking-uri / --storage")
    return MlflowClient(uri)


def report(args: argparse.Namespace) -> dict:
    if args.last < 1:
        raise ValueError("--last must be at least 1")
    searches = select(open_store(args), args)
    out = Path(args.out or Path(args.storage) / "report")
    summary = []
    for search in searches:
        folder = out / search.run_id
        written = write_search_report(search, folder, search.name)
        rows = pareto_rows(search.front, search.convention)
        print(f"\n{search.name} ({search.run_id}, {search.parent.info.status}): Pareto front, {len(search.front)} "
              f"of {len(search.eligible)} eligible trials")  # fmt: skip
        print_front(rows)
        print(f"  written: {', '.join(str(p) for p in written)}")
        summary.append(
            {"run_id": search.run_id, "name": search.name, "pareto": rows, "outputs": [str(p) for p in written]}
        )
    comparison = compare_hypervolumes(searches)
    tables = write_tables(COMPARE_COLUMNS, comparison, out / "hypervolume", caption="Searches side by side")
    print("\nSearches side by side (normalised hypervolume: own budget, and the largest budget shown):")
    print(to_terminal(COMPARE_COLUMNS, comparison))
    print(f"  written: {', '.join(str(p) for p in tables.values())}")
    return {"searches": summary, "comparison": comparison}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: report(args), args.json)


if __name__ == "__main__":
    sys.exit(main())
