"""Run an experiments/ command-line tool's main() in the test process: the real CLI code, without paying for a new
interpreter (and the torch, Ray and MLflow imports) per call. End-to-end tests still run the real commands."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(capsys, name: str, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python experiments/<name>.py ARGS`."""
    spec = importlib.util.spec_from_file_location(f"cli_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = module.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err
