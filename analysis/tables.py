"""Result tables in several formats (Markdown, CSV, LaTeX, plain text) from one list of row dicts.

A table is `columns` (the order of the columns and their headers) plus `rows`, each a dict from column name to a
value that is a str, int, float, bool or None; a key missing from a row is treated as None. Only the standard library
is used, so exported results can be formatted without the training stack installed.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path

Value = str | int | float | bool | None
Row = dict[str, Value]
# The latency columns a front's tables gain where its search has latency: the gate's prediction, the trial's measure.
LATENCY_COLUMNS = ["predicted_latency_ms", "latency_ms"]

__all__ = ["LATENCY_COLUMNS", "format_value", "to_markdown", "to_csv", "to_latex", "to_terminal", "write_tables"]


def format_value(v: object, missing: str = "–") -> str:
    """Human-readable cell text: floats to 3 decimals, ints unchanged, None as `missing`, bools as yes/no."""
    if v is None:
        return missing
    if isinstance(v, bool):  # before int: bool is a subclass of int
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numeric_columns(columns: Sequence[str], rows: Sequence[Row]) -> list[bool]:
    """Per column: True if it has at least one value and all its non-None values are ints or floats."""
    flags = []
    for column in columns:
        values = [row.get(column) for row in rows]
        present = [v for v in values if v is not None]
        flags.append(bool(present) and all(_is_number(v) for v in present))
    return flags


def _cells(columns: Sequence[str], rows: Sequence[Row], missing: str = "–") -> list[list[str]]:
    return [[format_value(row.get(column), missing) for column in columns] for row in rows]


def to_markdown(columns: Sequence[str], rows: Sequence[Row]) -> str:
    """GitHub pipe table; numeric columns are right-aligned with `---:`. Pipes inside cells are escaped."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    numeric = _numeric_columns(columns, rows)
    lines = ["| " + " | ".join(cell(c) for c in columns) + " |"]
    lines.append("|" + "|".join("---:" if is_num else "---" for is_num in numeric) + "|")
    for cells in _cells(columns, rows):
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _csv_value(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)  # shortest string that round-trips exactly; never rounded
    return str(v)


def to_csv(columns: Sequence[str], rows: Sequence[Row]) -> str:
    """CSV with a header row; None becomes an empty cell and floats keep their full (repr) precision."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(columns))
    for row in rows:
        writer.writerow([_csv_value(row.get(column)) for column in columns])
    return buffer.getvalue()


_LATEX_SPECIALS = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
}
_LATEX_PATTERN = re.compile("|".join(re.escape(ch) for ch in _LATEX_SPECIALS))


def _latex_escape(text: str) -> str:
    """Escape LaTeX specials in one pass, so the backslashes introduced by escaping are not escaped again."""
    return _LATEX_PATTERN.sub(lambda m: _LATEX_SPECIALS[m.group(0)], text)


def to_latex(columns: Sequence[str], rows: Sequence[Row], caption: str = "", label: str = "") -> str:
    """A booktabs `table` with a `tabular` (numeric columns `r`, others `l`); cells, headers and caption escaped.

    The label is used verbatim (it is an identifier for `\\ref`, not text); caption and label lines are omitted when
    empty. Requires `\\usepackage{booktabs}` in the document.
    """
    spec = "".join("r" if is_num else "l" for is_num in _numeric_columns(columns, rows))
    lines = [r"\begin{table}[htbp]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{_latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines.append(rf"\begin{{tabular}}{{{spec}}}")
    lines.append(r"\toprule")
    lines.append(" & ".join(_latex_escape(c) for c in columns) + r" \\")
    lines.append(r"\midrule")
    for cells in _cells(columns, rows):
        lines.append(" & ".join(_latex_escape(c) for c in cells) + r" \\")
    lines.append(r"\bottomrule")
    lines.append(r"\end{tabular}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_terminal(columns: Sequence[str], rows: Sequence[Row]) -> str:
    """Fixed-width plain text: header, a dashed rule, then rows; numeric columns right-aligned, others left."""
    numeric = _numeric_columns(columns, rows)
    body = _cells(columns, rows)
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            text.rjust(width) if is_num else text.ljust(width)
            for text, width, is_num in zip(cells, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    lines = [line(list(columns)), "  ".join("-" * w for w in widths)]
    lines.extend(line(cells) for cells in body)
    return "\n".join(lines) + "\n"


def write_tables(columns: Sequence[str], rows: Sequence[Row], stem: Path, caption: str = "") -> dict[str, Path]:
    """Write `<stem>.md`, `<stem>.csv` and `<stem>.tex` (label `tab:<stem name>`); returns the paths by format."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    contents = {
        "md": to_markdown(columns, rows),
        "csv": to_csv(columns, rows),
        "tex": to_latex(columns, rows, caption=caption, label=f"tab:{stem.name}"),
    }
    paths: dict[str, Path] = {}
    for fmt, text in contents.items():
        path = stem.parent / f"{stem.name}.{fmt}"  # not with_suffix: a stem like "run.v2" must keep its dot
        path.write_text(text, encoding="utf-8")
        paths[fmt] = path
    return paths
