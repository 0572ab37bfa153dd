"""A Ray head started for the tests (`ray start --head` on 127.0.0.1, its own temp folder), stopped by PID: never
`ray stop`, which kills every Ray process on the machine."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_head(temp: Path, cpus: int, env: dict[str, str]) -> tuple[str, subprocess.CompletedProcess]:
    """Start a head whose processes all name `temp` on their command lines; its address and the `ray start` run."""
    port = free_port()
    started = subprocess.run(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--num-cpus", str(cpus), "--include-dashboard", "false", "--temp-dir", str(temp),
         "--disable-usage-stats"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return f"127.0.0.1:{port}", started


def stop_processes_using(marker: str, grace: float = 5.0) -> None:
    """Stop every process whose command line names `marker` (TERM, then KILL those left after `grace` seconds)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.time() + wait
        while wait and time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.5)


def stop_head(temp: Path) -> None:
    stop_processes_using(str(temp))
    shutil.rmtree(temp, ignore_errors=True)
