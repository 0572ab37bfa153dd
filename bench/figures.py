"""Regenerate the figures of README.md and docs/*.md in place (`make figures`).

A figure is a block between `<!-- figure: COMMAND -->` and `<!-- /figure -->`. Each is replaced by COMMAND's output
(stdout; add `2>&1` for stderr too), run by the shell from the repository root with this environment's commands
first on PATH, then a line with the date and the kind of machine it ran on. The repository's own path, and the
home folder, are written as `.` and `~`, so no committed page holds a path of the machine. A command that fails
leaves its page untouched and is named with its exit code and output's tail.

python bench/figures.py                  # every figure (a quick-start search among them: minutes)
python bench/figures.py --list           # the figures and their commands, nothing run
python bench/figures.py --only space     # the figures whose command contains "space"
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A block's markers each stand on a line of their own (a page may name them inside a sentence).
BLOCK = re.compile(r"^(<!-- figure: (?P<command>[^\n]+?) -->\n)(?P<body>.*?)^(<!-- /figure -->)$", re.S | re.M)


@dataclass(frozen=True)
class Figure:
    page: Path
    command: str


def pages(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def figures(root: Path) -> list[Figure]:
    return [Figure(page, m["command"]) for page in pages(root) for m in BLOCK.finditer(page.read_text())]


def machine() -> str:
    """The kind of machine, in words: CPU cores and architecture, the GPU if any, Python and torch."""
    import torch

    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    python = ".".join(platform.python_version_tuple()[:2])
    return f"{os.cpu_count()}-core {platform.machine()} CPU{gpu}, Python {python}, torch {torch.__version__}"


def run(command: str, root: Path) -> str:
    """COMMAND's output, run from `root` with this interpreter's folder first on PATH; RuntimeError if it fails."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(command, shell=True, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{command}` failed (exit {done.returncode}): {(done.stderr or done.stdout)[-1500:]}")
    return done.stdout


def scrub(text: str, root: Path) -> str:
    """The output without the machine's paths: the repository as `.`, the home folder as `~`."""
    text = text.replace(str(root), ".")
    home = str(Path.home())
    return text.replace(home, "~") if home != "/" else text


def rendered(command: str, output: str, when: str, where: str) -> str:
    return f"```console\n$ {command}\n{output.rstrip()}\n```\n<sub>{when}, {where}</sub>\n"


def regenerate(root: Path, only: str | None = None, say=print) -> int:
    """Rerun the figures (those whose command contains `only`); returns how many were written."""
    where, written = machine(), 0
    for page in pages(root):
        text = page.read_text()

        def one(match: re.Match, page: Path = page) -> str:
            nonlocal written
            command = match["command"]
            if only is not None and only not in command:
                return match[0]
            say(f"{page.relative_to(root)}: {command}")
            output = scrub(run(command, root), root)
            written += 1
            when = datetime.date.today().isoformat()
            return f"{match[1]}{rendered(command, output, when, where)}{match[4]}"

        new = BLOCK.sub(one, text)
        if new != text:
            page.write_text(new)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="list the figures and their commands")
    parser.add_argument("--only", default=None, help="only the figures whose command contains this text")
    args = parser.parse_args(argv)
    if args.list:
        for figure in figures(ROOT):
            print(f"{figure.page.relative_to(ROOT)}: {figure.command}")
        return 0
    try:
        count = regenerate(ROOT, args.only)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{count} figure(s) regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
