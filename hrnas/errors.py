"""The one error path of every `hrnas` subcommand: bad input is one `error:` line on stderr and exit code 2.

Every input problem is raised as a ValueError (or FileNotFoundError) whose message names what is wrong and how to
fix it, before any work starts; `run_command` turns it into that line. Argument-parsing errors take the same path
(`Parser`), so no command prints a usage block and a traceback-free error in two different shapes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import NoReturn

EXIT_BAD_INPUT = 2
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


class Parser(argparse.ArgumentParser):
    """argparse with the common error shape: one `error:` line (the usage is one `--help` away), exit 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)")


def run_command(job: Callable[[], dict | None], as_json: bool = False) -> int:
    """Exit code of a command's job: 0, or 2 with one `error:` line for bad input; with --json the job's summary is
    the last line of the output."""
    try:
        summary = job()
    except INPUT_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if as_json and summary is not None:
        print(json.dumps(summary))
    return 0
