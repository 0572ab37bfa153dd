"""Committed results and docs hold no absolute path of the machine they were made on."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a path under a machine's own folders (a result written with str(path) of a run folder, a home directory)
ABSOLUTE = re.compile(r"(?<![\w.])/(?:work|root|home|Users|mnt|scratch|private|var/folders)/[\w.-]+")


def committed(*patterns: str) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / line for line in listed.stdout.splitlines() if (ROOT / line).is_file()]


def test_no_committed_result_or_doc_holds_an_absolute_path_of_a_machine():
    files = committed("bench/*.jsonl", "bench/*.json", "bench/*.md", "docs/*.md", "README.md", "fidelity/*.json")
    assert files, "git ls-files found nothing: run from a checkout"
    found = {str(f.relative_to(ROOT)): ABSOLUTE.findall(f.read_text()) for f in files}
    assert not {name: hits[:3] for name, hits in found.items() if hits}
