"""bench/figures.py (`make figures`): figure blocks of README.md and docs/ rerun in place, with the date and the kind
of machine, without the machine's paths; a failing command leaves its page as it was."""

import datetime
import sys

import pytest

from bench.figures import figures, regenerate

PRINT = f"{sys.executable} -c 'import os; print(6 * 7, os.getcwd())'"


def page(root, name: str, text: str):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_figure_block_is_rerun_in_place(tmp_path):
    mention = "a sentence naming `<!-- figure: COMMAND -->` and `<!-- /figure -->` is no figure\n"
    readme = page(tmp_path, "README.md", f"{mention}<!-- figure: {PRINT} -->\nstale 41\n<!-- /figure -->\nafter\n")
    other = page(tmp_path, "docs/a.md", "<!-- figure: echo other -->\nold\n<!-- /figure -->\n")
    assert [f.command for f in figures(tmp_path)] == [PRINT, "echo other"]
    assert regenerate(tmp_path, only="6 * 7", say=lambda _: None) == 1
    text = readme.read_text()
    assert text.startswith(f"{mention}<!-- figure: {PRINT} -->\n```console\n$ {PRINT}\n42 .\n```\n")
    assert "stale" not in text and str(tmp_path) not in text and text.endswith("<!-- /figure -->\nafter\n")
    assert f"<sub>{datetime.date.today().isoformat()}, " in text and "-core " in text and "Python 3." in text
    assert other.read_text() == "<!-- figure: echo other -->\nold\n<!-- /figure -->\n"  # not asked for


def test_a_failing_command_leaves_its_page_untouched(tmp_path):
    text = "<!-- figure: echo fine -->\nold\n<!-- /figure -->\n<!-- figure: exit 3 -->\nold\n<!-- /figure -->\n"
    readme = page(tmp_path, "README.md", text)
    with pytest.raises(RuntimeError, match="`exit 3` failed .exit 3."):
        regenerate(tmp_path, say=lambda _: None)
    assert readme.read_text() == text
