"""`hrnas space`: the counts of a space equal a brute-force count with the full `measure`; bad input exits 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from blocks.network import PoseNet
from search_space.budget import parse_budget
from search_space.complexity import measure
from search_space.presets import PRESETS, load_preset
from search_space.space import SearchSpace
from tests.scripts import run_script

SMALL_SPACE = "base: litehrnet-18\ngenes: {width: [30, 40], block: [shuffle, weighting], cross: [crw, none]}\n"


@pytest.fixture
def small_space(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL_SPACE)
    return path


def test_space_counts_equal_a_brute_force_count(small_space, capsys):
    code, out, err = run_script(
        capsys, "space", "--space", str(small_space), "--budget", "200M", "--convention", "conv-macs", "--json"
    )
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert {"genomes", "within_budget", "smallest_flops", "largest_flops", "presets"} <= set(summary)

    genomes = list(SearchSpace.from_file(small_space).valid_genomes())
    flops = [measure(lambda g=g: PoseNet(g.resolve()), (256, 192)).flops["conv-macs"] for g in genomes]
    compact = {g.compact() for g in genomes}
    assert summary["genomes"] == len(compact) == 6
    assert summary["within_budget"] == sum(f <= parse_budget("200M").raw for f in flops)
    assert 0 < summary["within_budget"] < summary["genomes"]  # the budget splits this space
    assert (summary["smallest_flops"], summary["largest_flops"]) == (min(flops), max(flops))
    assert summary["presets"] == [p for p in PRESETS if load_preset(p).compact() in compact]
    assert summary["presets"] == ["litehrnet-18", "naive-litehrnet-18", "wider-naive-litehrnet-18"]
    assert "counted 6 / 6 genomes" in err  # progress on stderr
    smallest = min(zip(flops, genomes, strict=True), key=lambda f: f[0])[1]
    assert summary["smallest_genome"] == smallest.canonical_line()  # its active genes only
    assert smallest.canonical_line() != smallest.compact()  # (here it has inactive genes to drop)


def test_without_budget_there_is_no_within_budget_count(small_space, capsys):
    code, out, _ = run_script(capsys, "space", "--space", str(small_space))
    assert code == 0
    assert "6 distinct genomes" in out and "within budget" not in out and "presets  litehrnet-18" in out


@pytest.mark.parametrize(
    "args,named",
    [
        (["--space", "no-such-space.yaml"], "no-such-space.yaml does not exist"),
        (["--budget", "lots"], "cannot read budget 'lots'"),
        (["--budget", "0M"], "must be positive"),
        (["--input", "250x192"], "multiples of 32"),
        (["--convention", "flops"], "invalid choice: 'flops'"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(capsys, args, named):
    try:
        code, out, err = run_script(capsys, "space", *args)
    except SystemExit as exit_:  # argparse errors leave through hrnas.errors.fail
        code, (out, err) = exit_.code, capsys.readouterr()
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and named in err
    assert out == ""


def test_the_experiments_wrapper_is_the_same_command(small_space):
    done = subprocess.run(
        [sys.executable, "experiments/space.py", "--space", str(small_space), "--json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["genomes"] == 6
