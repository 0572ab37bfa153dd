"""The measured fidelity of the search's signals on the default space and data, shipped with hrnas as package data.

`hrnas fidelity --truth bench/truth.jsonl --write-measured fidelity/measured.json` writes it from the committed
ground truth; a search reads it to state its own signal's tau (with interval), or that it is unmeasured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a search reads the statement only: no scipy in its driver (1.3 s of imports)
    from fidelity.report import Report

MEASURED = Path(__file__).resolve().parent / "measured.json"


def measured_summary(report: Report, space: str, data: str) -> dict:
    """What a search needs to state its signal's fidelity (no absolute path)."""
    return {
        "space": space,
        "data": data,
        "recipe": report.recipe,
        "genomes": report.genomes,
        "seed_ceiling": report.ceiling.to_dict()["seed_ceiling"],
        "signals": {row.signal: row.to_dict() for row in report.rows},
    }


def write_measured(report: Report, space: str, data: str, path: Path = MEASURED) -> Path:
    path.write_text(json.dumps(measured_summary(report, space, data), indent=1) + "\n")
    return path


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def statement(signal: str, default_space: bool, data: str, path: Path = MEASURED) -> tuple[str, float | None]:
    """One line on the search signal's measured fidelity, and its Kendall tau (None where unmeasured)."""
    how = "measure it with hrnas bench truth, hrnas bench signals and hrnas fidelity"
    if not default_space or data != "synthetic":
        where = "this space" if not default_space else "this data"
        return f"signal {signal}: its fidelity is unmeasured for {where} ({how})", None
    if not path.is_file():
        return f"signal {signal}: its fidelity is unmeasured (no ground truth of the default space ships yet)", None
    summary = json.loads(path.read_text())
    row = summary["signals"].get(signal)
    if row is None or row["kendall_tau"] is None:
        return (f"signal {signal}: its fidelity is unmeasured on the default space's ground truth "
                f"({summary['genomes']} genomes; {how})"), None  # fmt: skip
    low, high = row["kendall_tau_ci"]
    flops = summary["signals"].get("flops", {}).get("kendall_tau")
    text = (
        f"signal {signal}: Kendall tau {_signed(row['kendall_tau'])} [{_signed(low)}, {_signed(high)}] against a "
        f"ground truth of {row['n']} genomes of the default space (synthetic data, {summary['recipe']}); within "
        f"FLOPs bins {_signed(row['within_flops_tau'])}, FLOPs alone {_signed(flops)}, seed ceiling "
        f"{_signed(summary['seed_ceiling']['kendall_tau'])}"
    )
    return text, row["kendall_tau"]
