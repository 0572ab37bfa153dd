"""Budgeted multi-objective architecture search: Ray Tune runs short trainings, Optuna samples genomes (maximise
AP, minimise FLOPs), MLflow records every trial and the Pareto front. A genome over budget is never trained.

python experiments/search.py --budget 0.5GFLOPs                      # synthetic data, local Ray, local MLflow
python experiments/search.py --budget 300MFLOPs --trials 30 --epochs 4 --data /data/coco --input 256x192
python experiments/search.py --budget 0.5G --address 127.0.0.1:6379 --tracking-uri http://127.0.0.1:5000
python experiments/search.py --budget 0.5G --resume                  # continue a killed search
python experiments/search.py --budget 0.5G --strategy one-shot       # score genomes with a supernet trained once
python experiments/search.py --budget 0.3G --strategy one-shot --supernet runs/supernet --evaluations 300
python experiments/search.py --budget 0.3G --strategy one-shot --confirm 4   # then train 4 front members standalone
python experiments/search.py --budget 40ms --objectives ap,latency   # a latency budget (onnxruntime, 1 CPU thread)
python experiments/search.py --budget 0.5G --objectives ap,flops,latency   # a three-objective front
"""

from __future__ import annotations

import argparse
import sys

from hrnas.commands.trial_options import add_address_argument, add_one_shot_arguments, add_trial_resource_arguments
from hrnas.errors import Parser, run_command
from nas.options import CONFIRM_STARTS, OBJECTIVES, SAMPLERS, SCHEDULERS, SEARCH_FIDELITY, SearchArgs, describe_command
from pose.train import Recipe
from search_space.complexity import CONVENTIONS

DEFAULTS = SearchArgs(budget="")


def build_parser() -> Parser:
    p = Parser(prog="hrnas search", description=__doc__)
    p.add_argument(
        "--budget",
        required=True,
        help="FLOPs budget at 256x192, e.g. 0.5GFLOPs, 300MFLOPs (M = 2^20), "
        "or with a time unit a latency budget, e.g. 40ms (predicted by this machine's latency table)",
    )
    p.add_argument("--objectives", default=DEFAULTS.objectives, choices=list(OBJECTIVES), help="maximise AP, "
                   f"minimise the others (default {DEFAULTS.objectives})")  # fmt: skip
    p.add_argument("--latency-runtime", default=DEFAULTS.latency_runtime, help="what latency means: ort "
                   "(onnxruntime, default) or torch")  # fmt: skip
    p.add_argument("--latency-device", default=DEFAULTS.latency_device, help="... on cpu (default) or cuda")
    p.add_argument("--latency-batch", type=int, default=DEFAULTS.latency_batch, help="... at this batch (default 1)")
    p.add_argument("--latency-threads", type=int, default=DEFAULTS.latency_threads, help="... with this many "
                   "threads (default 1)")  # fmt: skip
    p.add_argument("--space", default=DEFAULTS.space, help="search space YAML (default: the packaged "
                   "default space, search_space/spaces/default.yaml)")  # fmt: skip
    add_one_shot_arguments(p, "how a genome gets its AP: trials (a short training each, default) or one-shot "
                           "(inherited weights of a supernet trained once for the space)")  # fmt: skip
    p.add_argument("--trials", type=int, default=DEFAULTS.trials, help=f"trained trials (default {DEFAULTS.trials})")
    p.add_argument("--keep-checkpoints", type=int, default=0, metavar="K", help="keep the trained weights of the K "
                   "best trials by AP besides the front's, for `hrnas export --run` (default 0)")  # fmt: skip
    p.add_argument("--evaluations", type=int, default=DEFAULTS.evaluations, help="one-shot: genomes scored "
                   f"(default {DEFAULTS.evaluations})")  # fmt: skip
    p.add_argument("--confirm", type=int, default=0, metavar="K", help="one-shot: then train K front members "
                   "(spread over FLOPs) standalone with train.py's recipe, their AP beside the inherited one "
                   "(default 0)")  # fmt: skip
    p.add_argument("--confirm-from", default=DEFAULTS.confirm_from, choices=list(CONFIRM_STARTS), help="--confirm "
                   "trains from scratch (default) or fine-tunes from the supernet's weights (inherited)")  # fmt: skip
    p.add_argument("--confirm-epochs", type=int, default=None, metavar="N", help=f"--confirm: epochs per member "
                   f"(default train.py's {Recipe().epochs})")  # fmt: skip
    p.add_argument("--confirm-steps", type=int, default=None, metavar="N", help="--confirm: stop each epoch after N "
                   "steps (default: whole epochs)")  # fmt: skip
    p.add_argument("--sampler", default=DEFAULTS.sampler, choices=list(SAMPLERS), help="Optuna sampler: auto "
                   "(TPE for trials, NSGA-II for one-shot; default), tpe, nsga2")  # fmt: skip
    p.add_argument("--data", default=DEFAULTS.data, help="synthetic | COCO_ROOT | ANN.json:IMAGE_DIR")
    p.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help=f"epochs per trial (default {DEFAULTS.epochs})")
    p.add_argument("--batch", type=int, default=None, help=f"batch size per trial (default {SEARCH_FIDELITY.batch}) "
                   f"or of the one-shot supernet (default {Recipe().batch})")  # fmt: skip
    p.add_argument("--lr", type=float, default=None, help=f"peak Adam learning rate per trial (default "
                   f"{SEARCH_FIDELITY.lr:g}) or of the one-shot supernet (default {Recipe().lr:g})")  # fmt: skip
    p.add_argument("--input", default=DEFAULTS.input, help=f"training crop HxW (default {DEFAULTS.input}); complexity "
                   "is always counted at 256x192")  # fmt: skip
    p.add_argument("--convention", default=DEFAULTS.convention, choices=list(CONVENTIONS), help="FLOPs convention")
    add_trial_resource_arguments(p, "trial")
    p.add_argument("--scheduler", default=DEFAULTS.scheduler, choices=list(SCHEDULERS), help="fifo (every trial "
                   "trains to the end, default) or asha (early stopping at equal epochs)")  # fmt: skip
    add_address_argument(p, "the trials")
    p.add_argument("--tracking-uri", default=None, help="MLflow server http://HOST:PORT (default: SQLite file "
                   "<storage>/mlflow.db)")  # fmt: skip
    p.add_argument("--experiment", default=DEFAULTS.experiment, help=f"MLflow experiment and search folder name "
                   f"(default {DEFAULTS.experiment})")  # fmt: skip
    p.add_argument("--storage", default=DEFAULTS.storage, help=f"folder for searches (default {DEFAULTS.storage})")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    p.add_argument("--resume", action="store_true", help="continue the interrupted search of this "
                   "--storage/--experiment")  # fmt: skip
    p.add_argument("--verbose", action="store_true", help="also show Ray's, Tune's and MLflow's own log lines")
    p.add_argument("--json", action="store_true", help="last line: one JSON object with the run ids and the front")
    return p


def search(args: argparse.Namespace, command: str) -> dict:
    values = {k: v for k, v in vars(args).items() if k not in {"resume", "json"}}
    options, state = SearchArgs(**values, command=command).open(args.resume)
    from nas.search_run import run  # Ray, Optuna and MLflow load only once the inputs are known to be good

    return run(options, state, args.resume)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    return run_command(lambda: search(args, describe_command(argv, "search")), args.json)


if __name__ == "__main__":
    sys.exit(main())
