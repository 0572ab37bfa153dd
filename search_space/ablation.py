"""Ablation tables as data: each row is a preset, optionally with genes switched, beside its published figures.

A table is a YAML file (`search_space/ablations/NAME.yaml`, shipped as package data):

    name: ccw
    title: ...
    source: where the published figures come from
    input: 256x192            # the input the complexity columns are counted at
    convention: torchstat     # the FLOPs convention of the published column
    printing: round           # how the paper printed its figures: round (Lite-HRNet) or truncate (Dite-HRNet)
    epochs: 4                 # proxy training length unless --epochs overrides it
    rows:
      - row: Lite-HRNet-18
        preset: litehrnet-18
        published: {params: 1.1M, flops: 205.2M, ap: 0.648}
      - row: without cross-resolution weighting
        preset: litehrnet-18
        genes: {cross: none}

Everything is checked when the file is read, and an error names the file, the row and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from search_space.complexity import CONVENTIONS, format_flops, format_params, genome_complexity, parse_input_size
from search_space.genome import Genome, GenomeError
from search_space.presets import PRESETS, load_preset

TABLE_DIR = Path(__file__).resolve().parent / "ablations"  # package data: ships with a non-editable install
PRINTING = {"round": False, "truncate": True}  # printing habit -> format_* truncate flag
PUBLISHED_KEYS = ("params", "flops", "ap")
TABLE_KEYS = {"name", "title", "source", "input", "convention", "printing", "epochs", "rows", "note"}
ROW_KEYS = {"row", "preset", "genes", "published", "printing"}


class TableError(ValueError):
    """A table file that cannot be used; the message names the file, the row and what to change."""


@dataclass(frozen=True)
class Published:
    """Figures as printed in the paper (strings for complexity, so a comparison is to the printed digit)."""

    params: str | None = None
    flops: str | None = None
    ap: float | None = None


@dataclass(frozen=True)
class AblationRow:
    name: str
    preset: str
    genes: dict[str, Any]
    genome: Genome
    published: Published
    truncate: bool  # print our figures the way the paper printed this row


@dataclass(frozen=True)
class AblationTable:
    name: str
    title: str
    source: str
    input_hw: tuple[int, int]
    convention: str
    epochs: int | None
    rows: tuple[AblationRow, ...]
    path: Path
    note: str = ""


@dataclass(frozen=True)
class ComplexityRow:
    """Our exact complexity of one row, printed the paper's way, beside the published figures."""

    row: AblationRow
    params: int
    flops: int
    params_printed: str
    flops_printed: str
    all_flops: dict[str, int] = field(default_factory=dict)

    @property
    def params_match(self) -> bool | None:
        published = self.row.published.params
        return None if published is None else published == self.params_printed

    @property
    def flops_match(self) -> bool | None:
        published = self.row.published.flops
        return None if published is None else published == self.flops_printed


def available_tables() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in TABLE_DIR.glob("*.yaml")))


def table_path(name: str) -> Path:
    """A table name (`lite-hrnet`) or a path to a table YAML file."""
    if name in available_tables():
        return TABLE_DIR / f"{name}.yaml"
    path = Path(name)
    if path.suffix in {".yaml", ".yml"} and path.is_file():
        return path
    raise TableError(f"unknown table {name!r}; tables: {', '.join(available_tables())} (or a path to a table YAML)")


def load_table(name: str) -> AblationTable:
    path = table_path(name)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise TableError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise TableError(f"{path}: expected a mapping with name, input, convention and rows")
    unknown = sorted(set(data) - TABLE_KEYS)
    if unknown:
        raise TableError(f"{path}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(TABLE_KEYS))}")
    convention = data.get("convention", "torchstat")
    if convention not in CONVENTIONS:
        raise TableError(f"{path}: convention {convention!r} unknown; choose one of {', '.join(CONVENTIONS)}")
    try:
        input_hw = parse_input_size(str(data.get("input", "256x192")))
    except ValueError as exc:
        raise TableError(f"{path}: input: {exc}") from exc
    epochs = data.get("epochs")
    if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1):
        raise TableError(f"{path}: epochs must be a positive integer, got {epochs!r}")
    printing = _printing(path, "the table", data.get("printing", "round"))
    rows = data.get("rows")
    if not isinstance(rows, list) or not rows:
        raise TableError(f"{path}: 'rows' must be a non-empty list of rows (each with 'row' and 'preset')")
    parsed = tuple(_row(path, i, r, printing) for i, r in enumerate(rows, 1))
    names = [r.name for r in parsed]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise TableError(f"{path}: row name {repeated[0]!r} appears twice; row names must be unique")
    return AblationTable(
        name=str(data.get("name", path.stem)),
        title=str(data.get("title", path.stem)),
        source=str(data.get("source", "")),
        input_hw=input_hw,
        convention=convention,
        epochs=epochs,
        rows=parsed,
        path=path,
        note=str(data.get("note", "")),
    )


def _printing(path: Path, where: str, value: Any) -> bool:
    if value not in PRINTING:
        raise TableError(f"{path}: {where}: printing {value!r} unknown; choose one of {', '.join(PRINTING)}")
    return PRINTING[value]


def _row(path: Path, index: int, data: Any, truncate: bool) -> AblationRow:
    where = f"row {index}"
    if not isinstance(data, dict):
        raise TableError(f"{path}: {where}: expected a mapping with 'row' and 'preset'")
    unknown = sorted(set(data) - ROW_KEYS)
    if unknown:
        raise TableError(f"{path}: {where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(ROW_KEYS))}")
    name = data.get("row")
    if not name:
        raise TableError(f"{path}: {where}: needs a 'row' name")
    where = f"row {index} ({name})"
    preset = data.get("preset")
    if preset not in PRESETS:
        raise TableError(f"{path}: {where}: preset {preset!r} unknown; presets: {', '.join(PRESETS)}")
    genes = data.get("genes") or {}
    if not isinstance(genes, dict):
        raise TableError(f"{path}: {where}: 'genes' must map gene names to values, e.g. {{cross: none}}")
    try:
        genome = load_preset(preset).with_genes(genes)
    except GenomeError as exc:
        raise TableError(f"{path}: {where}: {exc}") from exc
    published = data.get("published") or {}
    if not isinstance(published, dict) or set(published) - set(PUBLISHED_KEYS):
        raise TableError(f"{path}: {where}: 'published' takes only {', '.join(PUBLISHED_KEYS)}")
    ap = published.get("ap")
    if ap is not None and not (isinstance(ap, int | float) and 0 <= ap <= 1):
        raise TableError(f"{path}: {where}: published ap must be a fraction in [0, 1] (0.648, not 64.8)")
    return AblationRow(
        name=str(name),
        preset=preset,
        genes=dict(genes),
        genome=genome,
        published=Published(
            params=None if published.get("params") is None else str(published["params"]),
            flops=None if published.get("flops") is None else str(published["flops"]),
            ap=None if ap is None else float(ap),
        ),
        truncate=_printing(path, where, data["printing"]) if "printing" in data else truncate,
    )


def table_complexity(table: AblationTable, joints: int = 17) -> list[ComplexityRow]:
    """Exact params and FLOPs of every row at the table's input, printed the way the paper printed them."""
    out = []
    for row in table.rows:
        result = genome_complexity(row.genome, table.input_hw, joints)
        flops = result.flops[table.convention]
        out.append(
            ComplexityRow(
                row=row,
                params=result.params,
                flops=flops,
                params_printed=format_params(result.params, row.truncate),
                flops_printed=format_flops(flops, table.convention, row.truncate),
                all_flops=dict(result.flops),
            )
        )
    return out
