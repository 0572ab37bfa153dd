"""bench/gpu.sh --dry-run: every step of the GPU check runs on the CPU at tiny sizes, so that a GPU machine's run
is not the script's first."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = (
    "== cuda tests",
    "== training throughput on cpu, --amp off",
    "== training throughput on cpu, --amp bf16",
    "== the CPU figure beside it",
    "== a supernet step and a score on cpu",
    "== a two-trial search on cpu",
)
FILES = {"gpu.txt", "pytest.txt", "throughput.jsonl", "supernet.txt", "search.txt"}


def test_the_gpu_check_runs_every_step_on_the_cpu_with_dry_run(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "HRNAS_CACHE": str(tmp_path.parent / "hrnas-cache")}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(["bash", "bench/gpu.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "no figure below is a GPU figure" in done.stdout
    headers = [line for line in done.stdout.splitlines() if line.startswith("== ")]
    assert len(headers) == len(STEPS) and all(h.startswith(s) for h, s in zip(headers, STEPS, strict=True)), headers
    assert "exited" not in done.stdout  # no step failed
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == FILES
    assert len((out / "throughput.jsonl").read_text().splitlines()) == 3  # off, bf16 and the CPU figure
    assert '"trials_finished": 2' in (out / "search.txt").read_text()
