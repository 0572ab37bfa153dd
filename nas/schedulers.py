"""Trial schedulers of a search, by the name `--scheduler` gives (nas.options.SCHEDULERS lists the names)."""

from __future__ import annotations

from collections.abc import Callable

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from nas.options import SCHEDULERS, SearchOptions


def _fifo(options: SearchOptions) -> TrialScheduler | None:
    return None  # Tune's default: every trial trains to the end


def _asha(options: SearchOptions) -> TrialScheduler:
    # Rungs in epochs, not seconds, and no earlier than half the recipe: a small model is compared with the others
    # at the same number of epochs, never stopped for being slow, and not judged on its first noisy epoch.
    epochs = options.recipe.epochs
    return ASHAScheduler(
        time_attr="epoch", metric="ap", mode="max", max_t=epochs, grace_period=max(1, epochs // 2), reduction_factor=2
    )


BUILDERS: dict[str, Callable[[SearchOptions], TrialScheduler | None]] = {"fifo": _fifo, "asha": _asha}
assert tuple(BUILDERS) == SCHEDULERS


def scheduler_for(options: SearchOptions) -> TrialScheduler | None:
    return BUILDERS[options.scheduler](options)
