"""Run an `hrnas` subcommand's main() in the test process: the real CLI code, without paying for a new interpreter
(and the torch, Ray and MLflow imports) per call. End-to-end tests still run the real commands."""

from hrnas.cli import run_subcommand


def run_script(capsys, name: str, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `hrnas <name> ARGS` (= `python experiments/<name>.py ARGS`)."""
    code = run_subcommand(name, list(args))
    out, err = capsys.readouterr()
    return code, out, err
