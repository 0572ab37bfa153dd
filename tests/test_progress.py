"""The search's progress line: an ETA within 30 % of the real remaining time (trial durations simulated on a fake
clock), and a live front that holds restored trials."""

import re
from dataclasses import dataclass, field

import pytest

from nas import progress as progress_module
from nas.progress import SearchProgress, eta_seconds


@dataclass
class FakeTrial:
    trial_id: str
    status: str = "PENDING"
    last_result: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def test_eta_counts_a_last_wave_whole():
    assert eta_seconds(0, [], 60, 2) == 0
    assert eta_seconds(1, [30.0], 60, 2) == 60  # a free slot starts the pending trial now
    assert eta_seconds(3, [50.0, 10.0], 60, 2) == pytest.approx(10 + 60 + 60)  # 3 more in the slot freed at 10 s
    assert eta_seconds(0, [-30.0], 60, 2) == 0  # an overdue trial is counted as ending now


# MFLOPs of the default search's trials: the six presets first (cheapest first), then genomes the sampler proposes
DEFAULT_SEARCH = [195, 205, 210, 311, 319, 330, 420, 260, 480, 350]


@pytest.mark.parametrize(
    "flops", [[300] * 10, DEFAULT_SEARCH, [480, 195, 350, 205, 420, 210, 330, 260, 311, 319]], ids=str
)
def test_the_eta_of_a_simulated_search_is_within_30_percent(monkeypatch, capsys, flops):
    """Two trials at a time, each taking a start-up plus a time in proportion to its FLOPs (as one-epoch trials do)."""
    durations = [20 + 0.25 * f for f in flops]
    clock = {"now": 0.0}
    monkeypatch.setattr(progress_module.time, "time", lambda: clock["now"])
    trials = [FakeTrial(f"t{i}", config={"flops": f * 2**20}) for i, f in enumerate(flops)]
    callback = SearchProgress(len(trials), 2, None)
    ends: dict[str, float] = {}
    queue = list(trials)
    estimates = []

    def start_free_slots():
        while queue and sum(t.status == "RUNNING" for t in trials) < 2:
            trial = queue.pop(0)
            trial.status = "RUNNING"
            ends[trial.trial_id] = clock["now"] + durations[int(trial.trial_id[1:])]
            callback.on_trial_start(0, trials, trial)

    start_free_slots()
    while any(t.status == "RUNNING" for t in trials):
        trial = min((t for t in trials if t.status == "RUNNING"), key=lambda t: ends[t.trial_id])
        clock["now"] = ends[trial.trial_id]
        trial.last_result = {"ap": 0.1, "flops": 1e6, "complete": True}
        callback.on_trial_complete(0, trials, trial)
        trial.status = "TERMINATED"
        start_free_slots()
        eta = re.findall(r"ETA ([\d.]+) min", capsys.readouterr().err)
        if eta and queue:  # while trials are still to start
            estimates.append((clock["now"], float(eta[-1]) * 60))
    finish = clock["now"]
    assert len(estimates) >= 5
    for when, eta in estimates[1:]:  # from the second finished trial on (the first knows one duration)
        real = finish - when
        assert abs(eta - real) <= 0.3 * real, (when, eta, real)


def test_the_live_front_holds_restored_trials(capsys):
    restored = FakeTrial("r0", "TERMINATED", {"ap": 0.5, "flops": 2e6, "complete": True})
    callback = SearchProgress(3, 2, None)
    new = FakeTrial("n0", "RUNNING")
    callback.on_trial_start(0, [restored, new], new)
    assert "front: 0.500@" in capsys.readouterr().err
