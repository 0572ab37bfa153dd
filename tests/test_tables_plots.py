"""Tables (markdown, csv, latex, terminal) and the accuracy–complexity plot (PNG and interactive HTML)."""

from __future__ import annotations

import csv
import io

import pytest

from analysis.plots import PlotPoint, pareto_plot
from analysis.tables import format_value, to_csv, to_latex, to_markdown, to_terminal, write_tables

COLUMNS = ["name", "ap", "flops_m", "params", "on_front"]
ROWS = [
    {"name": "lite_hrnet_18", "ap": 0.6481234567891, "flops_m": 205.5, "params": 1100000, "on_front": True},
    {"name": "trial 7%", "ap": 0.1 + 0.2, "flops_m": None, "params": 900000, "on_front": False},
    {"name": "trial_9"},  # every other key missing -> None
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_format_value():
    assert format_value(0.6481234) == "0.648"
    assert format_value(3) == "3"
    assert format_value(True) == "yes"
    assert format_value(False) == "no"
    assert format_value(None) == "–"
    assert format_value(None, missing="n/a") == "n/a"
    assert format_value("a_b") == "a_b"


def test_markdown():
    text = to_markdown(COLUMNS, ROWS)
    lines = text.splitlines()
    assert lines[0] == "| name | ap | flops_m | params | on_front |"
    # name and on_front are not numeric, ap/flops_m/params are (None ignored)
    assert lines[1] == "|---|---:|---:|---:|---|"
    assert lines[2] == "| lite_hrnet_18 | 0.648 | 205.500 | 1100000 | yes |"
    assert lines[4] == "| trial_9 | – | – | – | – |"
    assert len(lines) == 2 + len(ROWS)


def test_markdown_escapes_pipe():
    text = to_markdown(["a"], [{"a": "x|y"}])
    assert "x\\|y" in text


def test_csv_round_trip_keeps_full_precision():
    text = to_csv(COLUMNS, ROWS)
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == COLUMNS
    assert float(parsed[1][1]) == ROWS[0]["ap"]
    assert float(parsed[2][1]) == 0.1 + 0.2  # 0.30000000000000004, would be lost by rounding
    assert parsed[2][2] == ""  # None -> empty cell
    assert parsed[3] == ["trial_9", "", "", "", ""]
    assert int(parsed[1][3]) == 1100000


def test_latex():
    text = to_latex(COLUMNS, ROWS, caption="AP at 10% budget", label="tab:res")
    assert r"\begin{table}" in text and r"\end{table}" in text
    assert r"\begin{tabular}{lrrrl}" in text
    assert text.index(r"\toprule") < text.index(r"\midrule") < text.index(r"\bottomrule")
    assert r"name & ap & flops\_m & params & on\_front \\" in text
    assert r"lite\_hrnet\_18 & 0.648 & 205.500 & 1100000 & yes \\" in text
    assert r"trial 7\% & 0.300 & – & 900000 & no \\" in text
    assert r"\caption{AP at 10\% budget}" in text
    assert r"\label{tab:res}" in text


def test_latex_escapes_all_specials_once():
    text = to_latex(["c"], [{"c": "a&b$c#d{e}f~g^h\\i"}])
    assert r"a\&b\$c\#d\{e\}f\textasciitilde{}g\textasciicircum{}h\textbackslash{}i \\" in text


def test_latex_without_caption_or_label():
    text = to_latex(["c"], [{"c": 1}])
    assert r"\caption" not in text and r"\label" not in text
    assert r"\begin{tabular}{r}" in text


def test_terminal_alignment():
    lines = to_terminal(COLUMNS, ROWS).splitlines()
    assert lines[0].split() == COLUMNS
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert len(lines) == 2 + len(ROWS)
    # numeric column right-aligned: "params" header and both values end at the same offset
    col_end = lines[0].index("params") + len("params")  # header right-aligned in a 7-char column
    assert lines[0][col_end - 7 : col_end] == " params"
    assert lines[2][col_end - 7 : col_end] == "1100000"
    assert lines[3][col_end - 7 : col_end] == " 900000"
    # text column left-aligned, None rendered as a dash
    assert lines[4].startswith("trial_9 ")
    assert lines[3].startswith("trial 7%      ")
    assert "–" in lines[4]


def test_write_tables(tmp_path):
    paths = write_tables(COLUMNS, ROWS, tmp_path / "sub" / "results.v1", caption="Results")
    assert set(paths) == {"md", "csv", "tex"}
    assert paths["md"].name == "results.v1.md"
    assert paths["md"].read_text(encoding="utf-8") == to_markdown(COLUMNS, ROWS)
    assert paths["csv"].read_text(encoding="utf-8") == to_csv(COLUMNS, ROWS)
    tex = paths["tex"].read_text(encoding="utf-8")
    assert r"\caption{Results}" in tex and r"\label{tab:results.v1}" in tex


def _points() -> list[PlotPoint]:
    return [
        PlotPoint("t0", 0.50, 100 * 2**20),
        PlotPoint("t1", 0.60, 200 * 2**20, hover="s2-b3-k5x7-genome"),
        PlotPoint("t2", 0.55, 250 * 2**20),
        PlotPoint("t3", 0.65, 400 * 2**20, label="lite_hrnet_18"),
    ]


def _check_png(path):
    assert path.exists()
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5000


def test_pareto_plot_png_and_html(tmp_path):
    png, html = tmp_path / "plot" / "front.png", tmp_path / "plot" / "front.html"
    written = pareto_plot(_points(), {"t0", "t1", "t3"}, 300 * 2**20, "search", png, html)
    assert written == [png, html]
    _check_png(png)
    text = html.read_text(encoding="utf-8")
    assert "plotly" in text.lower()
    assert "s2-b3-k5x7-genome" in text
    assert "lite_hrnet_18" in text
    assert len(text) > 1_000_000  # plotly.js is embedded, so the file works offline


def test_pareto_plot_png_only(tmp_path):
    png = tmp_path / "front.png"
    assert pareto_plot(_points(), {"t0"}, None, "", png) == [png]
    _check_png(png)
    assert not list(tmp_path.glob("*.html"))


@pytest.mark.parametrize("n", [0, 1])
def test_pareto_plot_few_points(tmp_path, n):
    points = _points()[:n]
    keys = {p.key for p in points}
    written = pareto_plot(points, keys, 150 * 2**20, f"{n} points", tmp_path / "a.png", tmp_path / "a.html")
    assert [p.name for p in written] == ["a.png", "a.html"]
    _check_png(written[0])
    assert "plotly" in written[1].read_text(encoding="utf-8").lower()


def test_labels_on_the_pareto_plot_cover_no_point_and_no_other_label():
    """The default search's presets sit close together (195-330M FLOPs, AP within a few points): each label finds a
    place that hides no trial and no other label (a fixed up-right offset covered both)."""
    import matplotlib.pyplot as plt

    from analysis.plots import MARKER_PIXELS, place_labels

    presets = [("naive-litehrnet-18", 194.8, 0.033), ("litehrnet-18", 205.2, 0.085), ("ditehrnet-18", 209.8, 0.081),
               ("wider-naive-litehrnet-18", 311.1, 0.060), ("litehrnet-30", 319.2, 0.070),
               ("ditehrnet-30", 329.8, 0.072)]  # fmt: skip
    trials = [(x, y) for _, x, y in presets] + [(150.0, 0.05), (260.0, 0.09), (400.0, 0.10), (215.0, 0.09)]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.scatter(*zip(*trials, strict=True))
    ax.margins(x=0.18, y=0.12)
    fig.tight_layout()
    texts = place_labels(ax, [(name, (x, y)) for name, x, y in presets], trials)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    centres = [ax.transData.transform(xy) for xy in trials]
    for i, box in enumerate(boxes):
        for x, y in centres:
            inside = (
                box.x0 - MARKER_PIXELS < x < box.x1 + MARKER_PIXELS
                and box.y0 - MARKER_PIXELS < y < box.y1 + MARKER_PIXELS
            )
            assert not inside, (texts[i].get_text(), (x, y))
        assert not any(box.overlaps(other) for other in boxes[:i] + boxes[i + 1 :]), texts[i].get_text()
    plt.close(fig)
