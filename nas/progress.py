"""One progress line per trial event: finished / running / pending, rejections, the current front, an ETA."""

from __future__ import annotations

import heapq
import time
from pathlib import Path

from ray import tune

from analysis.pareto import Point, pareto_front
from nas.options import say
from nas.trial import flat_config
from search_space.complexity import format_flops


def eta_seconds(pending: int, running_left: list[float], duration: float, concurrency: int) -> float:
    """When the last trial ends: the running ones end after their remaining time (at least zero), and every pending
    one, taking `duration`, starts in the first slot that frees (a simulation, so a last wave with fewer trials than
    slots is counted whole, not as a fraction)."""
    slots = [max(0.0, left) for left in running_left]
    slots += [0.0] * max(0, concurrency - len(slots))
    heapq.heapify(slots)
    for _ in range(pending):
        heapq.heappush(slots, heapq.heappop(slots) + duration)
    return max(slots, default=0.0)


class SearchProgress(tune.Callback):
    cost: str = "flops"  # class-level default: a callback pickled before latency searches resumes with it
    # flops, spent, paces: set in __init__ and __setstate__ (a callback pickled before they existed resumes with them)

    def __init__(
        self,
        total: int,
        concurrency: int,
        rejections_file: Path | None,
        convention: str = "torchstat",
        cost: str = "flops",
    ) -> None:
        """`rejections_file`: the searcher's record of samples refused before training (None: nothing is refused).
        `cost`: the trial result the running front is drawn against (flops, or predicted_latency_ms)."""
        self.total, self.concurrency, self.rejections_file = total, concurrency, rejections_file
        self.convention, self.cost = convention, cost
        self.start = time.time()
        self.started: dict[str, float] = {}
        self.points: dict[str, Point] = {}
        self.flops: dict[str, float] = {}  # trial -> its FLOPs (1 where a trial has none: durations then average)
        self.spent: dict[str, float] = {}  # finished trial -> its seconds
        self.paces: dict[str, float] = {}  # running trial -> its expected duration from its epochs so far

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.start, self.started = time.time(), {}  # a resumed search measures its own pace
        self.flops, self.spent, self.paces = {}, {}, {}

    def _rejected(self) -> str:
        if self.rejections_file is None:
            return ""
        count = 0
        if self.rejections_file.is_file():
            count = sum(1 for line in self.rejections_file.read_text().splitlines() if line.strip())
        return f" | {count} rejected before training"

    def _print(self, trials: list, event: str, ended: tuple[str, str] | None = None) -> None:
        """`ended`: (trial id, final status) of a trial whose status Tune has not updated yet."""
        states = [ended[1] if ended and t.trial_id == ended[0] else t.status for t in trials]
        finished = states.count("TERMINATED")
        failed = states.count("ERROR")
        running = states.count("RUNNING")
        pending = max(0, self.total - finished - failed - running)
        front = sorted(pareto_front(self._points(trials)), key=lambda p: p.flops)
        shown = ", ".join(f"{p.ap:.3f}@{self._show(p.flops)}" for p in front) or "-"
        eta = self._eta(trials, states, pending)
        self._say(
            f"{event:<28} trials: {finished} finished, {failed} failed, {running} running, "
            f"{pending} pending of {self.total}{self._rejected()} | front: {shown}{eta}"
        )

    def _points(self, trials: list) -> list[Point]:
        """Every trial that trained to its end, restored ones included (Tune lists them with their last result)."""
        points = dict(self.points)
        for trial in trials:
            result = trial.last_result or {}
            if result.get("complete") and isinstance(result.get("ap"), float) and self.cost in result:
                points[trial.trial_id] = Point(trial.trial_id, result["ap"], float(result[self.cost]))
        return list(points.values())

    def _eta(self, trials: list, states: list[str], pending: int) -> str:
        """Trials take time in proportion to their FLOPs (the seconds per FLOP of the finished ones, or before any
        has finished, the running ones' pace); a pending trial is as large as the mean of those started so far."""
        if self.spent:
            rate = sum(self.spent.values()) / sum(self.flops[t] for t in self.spent)
        elif self.paces:
            rate = sum(self.paces.values()) / sum(self.flops[t] for t in self.paces)
        else:
            return ""
        now = time.time()
        running = [t.trial_id for t, state in zip(trials, states, strict=True) if state == "RUNNING"]
        left = [rate * self.flops.get(t, self._mean_flops()) - (now - self.started.get(t, now)) for t in running]
        seconds = eta_seconds(pending, left, rate * self._mean_flops(), self.concurrency)
        return f" | ETA {seconds / 60:.1f} min"

    def _mean_flops(self) -> float:
        return sum(self.flops.values()) / len(self.flops)

    def _show(self, cost: float) -> str:
        return format_flops(int(cost), self.convention) if self.cost == "flops" else f"{cost:.1f}ms"

    def _say(self, text: str) -> None:
        say(f"[{(time.time() - self.start) / 60:5.1f} min] {text}")

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self.started[trial.trial_id] = time.time()
        self.flops[trial.trial_id] = float(flat_config(trial.config or {}).get("flops") or 1.0)
        self._print(trials, f"start {trial.trial_id}", (trial.trial_id, "RUNNING"))

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        """One short line per finished epoch, so a long trial shows it is alive (and how fast it goes)."""
        if "epoch" not in result or result.get("complete"):
            return
        if trial.trial_id in self.started and result.get("epochs_total"):
            spent = time.time() - self.started[trial.trial_id]
            self.paces[trial.trial_id] = spent / result["epoch"] * result["epochs_total"]
        label = flat_config(trial.config).get("row")  # an ablation row's name; searches have none
        self._say(
            f"  {trial.trial_id}{f' ({label})' if label else ''} epoch {result['epoch']}/"
            f"{result.get('epochs_total', '?')} AP {result.get('ap', float('nan')):.3f}"
        )

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self.paces.pop(trial.trial_id, None)
        if trial.trial_id in self.started:
            self.spent[trial.trial_id] = time.time() - self.started.pop(trial.trial_id)
        result = trial.last_result or {}
        if result.get("complete") and isinstance(result.get("ap"), float):
            self.points[trial.trial_id] = Point(trial.trial_id, result["ap"], float(result[self.cost]))
        self._print(
            trials, f"done {trial.trial_id} AP {result.get('ap', float('nan')):.3f}", (trial.trial_id, "TERMINATED")
        )

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self.started.pop(trial.trial_id, None)
        self.paces.pop(trial.trial_id, None)
        self._print(trials, f"FAILED {trial.trial_id}", (trial.trial_id, "ERROR"))
