"""A non-editable install works from any folder: the wheel carries the default space, the presets and the ablation
tables, and the `hrnas` console command's module answers from an empty folder with only the wheel on the path.

The wheel is built from a copy of the source tree (no `build/` left in the checkout), unpacked as pip would
install it, and run with PYTHONPATH pointing at the unpacked wheel alone, from an empty working directory.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "runs", "mlruns", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".ruff_cache", ".cache", "*.onnx")  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The folder a non-editable `pip install .` would fill: the wheel, built without the checkout, unpacked."""
    tmp = tmp_path_factory.mktemp("package")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"),
         str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("hrnas-*.whl")
    target = tmp / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def hrnas(installed: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m hrnas.cli ARGS` from an empty folder, importing the project from the unpacked wheel only."""
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(installed), HRNAS_CACHE=str(tmp_path / "cache"))
    return subprocess.run(
        [sys.executable, "-m", "hrnas.cli", *args], cwd=empty, env=env, capture_output=True, text=True, timeout=300
    )


def test_wheel_carries_the_package_data(installed):
    data = {p.relative_to(installed).as_posix() for p in installed.rglob("*.yaml")}
    for path in ("search_space/spaces/default.yaml", "search_space/presets/litehrnet-18.yaml",
                 "search_space/ablations/lite-hrnet.yaml"):  # fmt: skip
        assert path in data, sorted(data)
    entry_points = next(installed.glob("hrnas-*.dist-info")) / "entry_points.txt"
    assert "hrnas = hrnas.cli:main" in entry_points.read_text()


def test_installed_modules_are_the_wheel_s_not_the_checkout_s(installed, tmp_path):
    where = subprocess.run(
        [sys.executable, "-c", "import hrnas, search_space, nas, pose; print(search_space.__file__, nas.__file__)"],
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(installed)), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr[-3000:]
    assert all(Path(p).is_relative_to(installed) for p in where.stdout.split()), where.stdout


def test_complexity_and_ablation_table_from_an_empty_folder(installed, tmp_path):
    done = hrnas(installed, tmp_path, "complexity", "--arch", "litehrnet-18", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert (record["flops"], record["params"]) == (215202112, 1130769)  # the published Lite-HRNet-18 figures

    done = hrnas(installed, tmp_path, "ablate", "--table", "lite-hrnet", "--complexity-only", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])["rows"]
    assert [r["preset"] for r in rows] == ["naive-litehrnet-18", "wider-naive-litehrnet-18", "litehrnet-18",
                                           "litehrnet-30"]  # fmt: skip
    assert all(r["flops_match"] for r in rows)
    assert list((tmp_path / "empty").iterdir()) == []  # nothing written where the user stands


def test_help_lists_every_subcommand(installed, tmp_path):
    done = hrnas(installed, tmp_path, "--help")
    assert done.returncode == 0
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")}
    assert {"search", "train", "evaluate", "ablate", "report", "complexity", "export"} <= listed
