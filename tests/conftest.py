"""Fixtures shared by the test files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.ray_head import start_head, stop_head


@pytest.fixture(scope="session")
def ray_head() -> str:
    """One Ray head per test process (pytest-xdist worker), with the machine's CPUs, for the tests whose searches
    need not start a local Ray of their own (each start and stop costs 5-7 s): its address, for `RAY_ADDRESS`.
    The tests of the default path (a private local Ray, Ctrl-C and SIGKILL of the driver with it) do not use it."""
    temp = Path("/tmp") / f"hrnas-test-ray-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k not in {"RAY_ADDRESS", "HRNAS_FAULTS"}}
    address, started = start_head(temp, os.cpu_count() or 1, {**env, "RAY_AUTH_MODE": "token"})
    if started.returncode != 0:
        stop_head(temp)
        pytest.fail(f"could not start the tests' Ray head: {started.stderr[-2000:]}")
    yield address
    stop_head(temp)
