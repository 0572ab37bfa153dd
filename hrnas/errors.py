"""The one error path of every `hrnas` subcommand: bad input is one `error:` line on stderr and exit code 2.

Every input problem is raised as a ValueError (or FileNotFoundError) whose message names what is wrong and how to
fix it, before any work starts; `run_command` turns it into that line. Argument-parsing errors take the same path
(`Parser`), so no command prints a usage block and a traceback-free error in two different shapes.
"""

from __future__ import annotations

import argparse
import difflib
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
        if message.startswith("argument --") and message.endswith("expected one argument"):
            name = message.split()[1].rstrip(":").split("/")[0]
            message += f" (a value that starts with '-' is read as an option: write it {name}=VALUE)"
        fail(f"{message} (see {self.prog} --help)")

    def parse_known_args(self, args=None, namespace=None):
        """An unknown --option is named first, with the nearest known one (before argparse would complain of a
        missing required option that is merely misspelt)."""
        tokens = sys.argv[1:] if args is None else list(args)
        known = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
        for token in tokens:
            if token == "--":
                break
            name = token.split("=", 1)[0]
            if not name.startswith("--") or name in known or sum(o.startswith(name) for o in known) == 1:
                continue
            if self._subparsers is not None:  # options of a subcommand belong to its own parser
                break
            near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]}?" if near else ""
            fail(f"unknown option {name}{hint} (see {self.prog} --help)")
        return super().parse_known_args(args, namespace)


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
