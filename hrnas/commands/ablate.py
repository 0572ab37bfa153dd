"""Rebuild a paper's ablation table from genes: our exact #Params and FLOPs beside the published figures, and our
proxy AP (every row trained under one short recipe, on Ray Tune, one MLflow run per row) beside the published AP.

python experiments/ablate.py --table lite-hrnet --complexity-only      # seconds: the complexity columns only
python experiments/ablate.py --table lite-hrnet --complexity-only --latency   # and every row's measured latency
python experiments/ablate.py --table lite-hrnet                        # train every row (synthetic data)
python experiments/ablate.py --table ccw --epochs 8 --data /data/coco --input 256x192 --json
python experiments/ablate.py --table my-table.yaml --resume            # continue a killed run of a table
python experiments/ablate.py --table dite-hrnet --strategy one-shot    # rows in the supernet's space: inherited AP
python experiments/ablate.py --table ccw --strategy one-shot --supernet runs/supernet

Tables: lite-hrnet, ccw, dite-hrnet, fuse, reduction (shipped in search_space/ablations/), or any YAML in that format.
"""

from __future__ import annotations

import argparse
import sys

from hrnas.commands.trial_options import add_address_argument, add_one_shot_arguments, add_trial_resource_arguments
from hrnas.errors import Parser, run_command
from nas.options import AblationArgs, describe_command
from search_space.ablation import available_tables

DEFAULTS = AblationArgs(table="")


def build_parser() -> Parser:
    p = Parser(prog="hrnas ablate", description=__doc__)
    p.add_argument("--table", required=True, help=f"{', '.join(available_tables())}, or a table YAML file")
    p.add_argument("--data", default=DEFAULTS.data, help="synthetic | COCO_ROOT | ANN.json:IMAGE_DIR")
    p.add_argument("--epochs", type=int, default=None, help="epochs per row (default: the table's)")
    p.add_argument("--input", default=DEFAULTS.input, help=f"training crop HxW (default {DEFAULTS.input}); "
                   "complexity is counted at the table's input")  # fmt: skip
    p.add_argument("--batch", type=int, default=DEFAULTS.batch, help=f"batch size (default {DEFAULTS.batch})")
    p.add_argument("--lr", type=float, default=DEFAULTS.lr, help=f"peak Adam learning rate (default {DEFAULTS.lr:g})")
    add_one_shot_arguments(p, "how a row gets its AP: trials (trained, default) or one-shot (rows in the "
                           "supernet's space scored with its weights, the others trained)")  # fmt: skip
    p.add_argument("--space", default=None, help="one-shot: the supernet's space YAML (default: --supernet's, else "
                   "the packaged default space)")  # fmt: skip
    p.add_argument("--latency", action="store_true", help="also measure every row's latency (onnxruntime, CPU, "
                   "batch 1, one thread, at the table's input)")  # fmt: skip
    p.add_argument("--complexity-only", action="store_true", help="print the complexity columns, train nothing")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    add_trial_resource_arguments(p, "row")
    add_address_argument(p, "the rows")
    p.add_argument("--tracking-uri", default=None, help="MLflow server http://HOST:PORT (default: SQLite file "
                   "<storage>/mlflow.db)")  # fmt: skip
    p.add_argument("--experiment", default=DEFAULTS.experiment, help=f"MLflow experiment (default "
                   f"{DEFAULTS.experiment})")  # fmt: skip
    p.add_argument("--storage", default=DEFAULTS.storage, help=f"folder for runs (default {DEFAULTS.storage})")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run of this --table/--storage")
    p.add_argument("--verbose", action="store_true", help="also show Ray's, Tune's and MLflow's own log lines")
    p.add_argument("--json", action="store_true", help="last line: one JSON object with a 'rows' list")
    return p


def ablate(args: argparse.Namespace, command: str) -> dict:
    if args.complexity_only:
        from nas.ablation_run import complexity_only

        return complexity_only(args.table, args.latency)
    values = {k: v for k, v in vars(args).items() if k not in {"resume", "json", "complexity_only"}}
    options, state = AblationArgs(**values, command=command).open(args.resume)
    from nas.ablation_run import run_table  # Ray and MLflow load only once the inputs are known to be good

    return run_table(options, state, args.resume)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    return run_command(lambda: ablate(args, describe_command(argv, "ablate")), args.json)


if __name__ == "__main__":
    sys.exit(main())
