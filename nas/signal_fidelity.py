"""The search's own signal and its measured fidelity: which signal of the ground truth ranks this search's genomes,
stated at the end of the search and on its MLflow parent run (from fidelity/measured.json)."""

from __future__ import annotations

import time
from dataclasses import replace

from mlflow.tracking import MlflowClient

from fidelity.measured import statement
from nas.options import SEARCH_FIDELITY, SEARCH_SUPERNET_EPOCHS, SearchOptions
from pose.train import Recipe
from search_space.space import DEFAULT_SPACE, SearchSpace


def search_signal(options: SearchOptions) -> str | None:
    """The name (fidelity.signals) of the signal that ranks this search's genomes; None for one no table measures
    (another trial recipe, a given supernet, supernet epochs cut to steps)."""
    recipe = options.recipe
    if options.one_shot is not None:
        one_shot = options.one_shot
        if one_shot.supernet is not None or one_shot.recipe.max_steps:
            return None
        epochs = one_shot.recipe.epochs
        return "one-shot" if epochs == SEARCH_SUPERNET_EPOCHS else f"one-shot-{epochs}ep"
    same = {"seed": recipe.seed, "threads": recipe.threads, "epochs": recipe.epochs}
    if recipe == replace(SEARCH_FIDELITY, **same):
        return f"trials-{recipe.epochs}"
    if recipe == replace(Recipe(), **same) and recipe.epochs == Recipe().epochs:
        return f"train-{recipe.epochs}"
    return None


def is_default_space(space: SearchSpace) -> bool:
    default = SearchSpace.from_file(DEFAULT_SPACE)
    return (space.base, space.choices) == (default.base, default.choices)


def state_fidelity(client: MlflowClient, parent_id: str, options: SearchOptions) -> tuple[str, float | None]:
    """The search signal's measured fidelity (fidelity/measured.json), as one line and on the parent run."""
    signal = search_signal(options)
    if signal is None:
        text, tau = (
            "signal: this search's scoring is not one the ground truth measures; its fidelity is unmeasured",
            None,
        )
    else:
        data = "synthetic" if options.source is None else options.data
        text, tau = statement(signal, is_default_space(options.space), data)
    client.set_tag(parent_id, "signal_fidelity", text)
    client.set_tag(parent_id, "signal", signal or "custom")
    if tau is not None:
        client.log_metric(parent_id, "signal_kendall_tau", tau, int(time.time() * 1000))
    return text, tau
