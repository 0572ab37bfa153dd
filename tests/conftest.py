"""Fixtures shared by the test files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.ray_head import start_head, stop_head


def share_the_cores() -> None:
    """Each test process (pytest-xdist worker) runs PyTorch on its share of the cores, and idle OpenMP threads sleep
    instead of spinning: two workers of two threads each on two cores spun at every OpenMP barrier (measured: two
    files side by side took 47-50 s and 62-70 s with the defaults, 26-29 s and 50-56 s with one thread each).
    Set before PyTorch loads (OpenMP reads them once); the subprocesses and Ray instances of the tests inherit
    them, and every trial still sets its own `--threads`."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


share_the_cores()


def ray_head_temp() -> Path:
    return Path("/tmp") / f"hrnas-test-ray-{os.getpid()}"


@pytest.fixture(scope="session")
def ray_head_cache() -> Path:
    """The cache folder of the `ray_head` fixture's processes (HRNAS_CACHE), unlike any job's: a job's trials and
    Ray Train workers use their driver's, which travels in the job's runtime environment, and never write here."""
    return ray_head_temp() / "head-cache"


@pytest.fixture(scope="session")
def ray_head(ray_head_cache) -> str:
    """One Ray head per test process (pytest-xdist worker), with the machine's CPUs, for the tests whose searches
    need not start a local Ray of their own (each start and stop costs 5-7 s): its address, for `RAY_ADDRESS`.
    The tests of the default path (a private local Ray, Ctrl-C and SIGKILL of the driver with it) do not use it."""
    temp = ray_head_temp()
    env = {k: v for k, v in os.environ.items() if k not in {"RAY_ADDRESS", "HRNAS_FAULTS"}}
    env.update(RAY_AUTH_MODE="token", HRNAS_CACHE=str(ray_head_cache))
    address, started = start_head(temp, os.cpu_count() or 1, env)
    if started.returncode != 0:
        stop_head(temp)
        pytest.fail(f"could not start the tests' Ray head: {started.stderr[-2000:]}")
    yield address
    stop_head(temp)
