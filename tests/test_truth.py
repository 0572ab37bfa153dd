"""The ground truth (`hrnas bench truth`): canonical genomes, the stratified sample, the plan's order, the JSONL
table; a tiny truth trained end to end as real Ray trials, stopped by Ctrl-C, then by SIGKILL, and run again."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from fidelity.sample import Member, coverage, population, spread, stratified
from fidelity.truth import Plan, TruthError, TruthRecipe, check_recipe, finished, read_lines
from pose.train import Recipe
from search_space.budget import parse_budget
from search_space.complexity import genome_complexity
from search_space.genome import Genome
from search_space.space import DEFAULT_SPACE, SearchSpace
from tests.scripts import run_script
from tests.test_search import MINI_DATA
from tests.test_search import environment as search_environment

ROOT = Path(__file__).resolve().parents[1]
TINY_BASE = "stem: lite\nwidth: 8\nmodules: [1, 1, 1]\nblocks: 1\nblock: weighting\n"


def torchstat(genome: Genome) -> int:
    return genome_complexity(genome).flops["torchstat"]


def test_inactive_genes_are_dropped_so_one_network_has_one_line():
    base = Genome.from_compact("stem=lite width=40 block=weighting cross=none within=sw cross_ratio=8")
    other = base.with_genes({"cross_ratio": 16})  # cross_ratio changes nothing while cross=none
    assert base.compact() != other.compact()
    assert base.canonical_line() == other.canonical_line() and "cross_ratio" not in base.canonical_line()
    shuffle = Genome.from_compact("width=40 block=shuffle cross=none within=none kernels=1 dsc_groups=1")
    line = shuffle.canonical_line()
    assert not any(f"{g}=" in line for g in ("cross", "within", "kernels", "dsc_groups", "cross_ratio"))
    for genome in (base, other, shuffle):  # the line parses back to the same network
        again = Genome.from_canonical(genome.canonical_line())
        assert again.canonical_line() == genome.canonical_line() and torchstat(again) == torchstat(genome)


def test_every_genome_of_the_default_space_has_its_own_canonical_line():
    space = SearchSpace.from_file(DEFAULT_SPACE)
    genomes = list(space.valid_genomes())
    lines = {g.canonical_line() for g in genomes}
    assert len(lines) == len(genomes)
    for genome in genomes[:: len(genomes) // 40]:
        assert torchstat(Genome.from_canonical(genome.canonical_line())) == torchstat(genome)


@pytest.fixture(scope="module")
def default_population():
    return population(SearchSpace.from_file(DEFAULT_SPACE), torchstat, parse_budget("0.5G").raw)


GENES = SearchSpace.from_file(DEFAULT_SPACE).ordered()


def test_the_sample_is_stratified_over_flops_and_gene_values_and_redrawn_by_its_seed(default_population):
    members = default_population
    assert all(m.flops <= parse_budget("0.5G").raw for m in members) and len(members) > 1000
    drawn = stratified(members, 24, 6, 0, GENES)
    assert drawn == stratified(members, 24, 6, 0, GENES) and drawn != stratified(members, 24, 6, 1, GENES)
    assert len({m.genome for m in drawn}) == 24
    ordered = sorted(m.flops for m in members)
    for b in range(6):  # four genomes from each FLOPs sextile
        low, high = ordered[len(ordered) * b // 6], ordered[(len(ordered) * (b + 1)) // 6 - 1]
        assert sum(low <= m.flops <= high for m in drawn) >= 4
    covered = coverage(drawn)
    space = SearchSpace.from_file(DEFAULT_SPACE)
    for gene in ("stem", "modules", "block", "cross", "within", "kernels", "dsc_groups", "fuse"):
        assert len(covered[gene]) == len(space.choices[gene]), (gene, covered[gene])  # every value drawn
        assert max(covered[gene].values()) <= 3 * min(covered[gene].values()), (gene, covered[gene])


def test_the_plan_runs_its_checks_first_and_skips_what_the_file_holds():
    members = [Member(f"width={w}", w) for w in (8, 12, 16, 20, 24)]
    recipe = TruthRecipe("r", Recipe())
    plan = Plan.build(members, recipe, seeds=2, seeded=3, convergence=2, params={})
    kinds = [(j.member.genome, j.seed, j.kind) for j in plan.jobs]
    assert kinds[:6] == [
        ("width=24", 0, "truth"),  # the largest genome first: its checkpoint warm-starts the `-init` supernets
        ("width=8", 0, "truth"), ("width=8", 1, "truth"), ("width=8", 0, "convergence"),
        ("width=24", 1, "truth"), ("width=24", 0, "convergence"),
    ]  # fmt: skip
    assert kinds[6:8] == [("width=16", 0, "truth"), ("width=16", 1, "truth")]
    assert sorted(kinds[8:]) == [("width=12", 0, "truth"), ("width=20", 0, "truth")]
    assert plan.jobs[3].recipe.recipe.epochs == 2 * Recipe().epochs
    assert [m.genome for m in spread(members, 3)] == ["width=8", "width=16", "width=24"]
    done = {("width=8", 0, "truth"), ("width=24", 0, "convergence")}
    assert len(plan.pending(done)) == len(plan.jobs) - 2


def test_a_file_with_another_recipe_or_a_broken_line_is_refused(tmp_path):
    recipe = TruthRecipe("truth-24ep-128x96", Recipe(epochs=24))
    line = {"genome": "g", "seed": 0, "epoch": 24, "epochs": 24, "kind": "truth", "recipe": recipe.record()}
    check_recipe([line], recipe, tmp_path / "t.jsonl")
    assert finished([line, {**line, "epoch": 3}]) == {("g", 0, "truth")}
    other = TruthRecipe("truth-12ep-128x96", Recipe(epochs=12))
    with pytest.raises(TruthError, match="holds truth lines of recipe truth-24ep-128x96 .*another --out"):
        check_recipe([line], other, tmp_path / "t.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(line) + "\n{not json\n")
    with pytest.raises(TruthError, match="broken.jsonl:2 is not a JSON line"):
        read_lines(broken)
    with pytest.raises(TruthError, match="does not exist"):
        read_lines(tmp_path / "missing.jsonl")


def test_bad_truth_input_is_one_line_before_any_training(tmp_path, capsys):
    out = tmp_path / "t.jsonl"
    out.write_text(json.dumps({"genome": "g", "seed": 0, "epoch": 1, "epochs": 1, "kind": "truth",
                               "recipe": {"name": "old", "input_hw": [64, 48], "epochs": 1, "batch": 8, "lr": 0.1}})
                   + "\n")  # fmt: skip
    for extra, message in [
        ([], "holds truth lines of recipe old"),
        (["--input", "100x75"], "multiples of 32"),
        (["--data", "missing.json:nowhere"], "missing.json"),
    ]:
        code, _, err = run_script(capsys, "bench", "truth", "--out", str(out), "--folder", str(tmp_path), *extra)
        assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "tune").exists()


# ---- end to end: a tiny truth on real Ray trials ------------------------------------------------------------------
def tiny_truth(tmp_path) -> list[str]:
    """On coco-mini (14 people to score each epoch; the synthetic default's 298 made the test 1.6x slower)."""
    base, space = tmp_path / "base.yaml", tmp_path / "space.yaml"
    base.write_text(TINY_BASE)
    space.write_text(f"name: tiny\nbase: {base}\ngenes: {{width: [8, 12, 16], block: [shuffle, weighting]}}\n")
    return [
        sys.executable, "-m", "hrnas.cli", "bench", "truth", "--space", str(space), "--budget", "1G",
        "--genomes", "4", "--strata", "2", "--seeded", "2", "--convergence", "1", "--epochs", "2",
        "--max-steps", "2", "--input", "64x64", "--data", MINI_DATA, "--out", str(tmp_path / "truth.jsonl"),
        "--folder", str(tmp_path / "run"),
    ]  # fmt: skip


def environment(tmp_path, ray_address: str | None = None) -> dict:
    """test_search's: a private local Ray, or with `ray_address` the test process's Ray head; unbuffered output."""
    return search_environment(tmp_path, ray_address, PYTHONUNBUFFERED="1")


def trainings_in(path: Path) -> Counter:
    """How many final-epoch lines each training has (one each, when nothing is duplicated)."""
    if not path.is_file():
        return Counter()
    return Counter((d["genome"], d["seed"], d["kind"]) for d in read_lines(path) if d["epoch"] == d["epochs"])


def stop_after_a_training(tmp_path, sig: int, ray_address: str) -> tuple[Counter, str]:
    """Start the truth, send `sig` to the driver once one more training's lines are in the file; (trainings by then,
    the driver's stderr)."""
    truth = tmp_path / "truth.jsonl"
    driver = subprocess.Popen(
        tiny_truth(tmp_path), cwd=ROOT, env=environment(tmp_path, ray_address), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    held = sum(trainings_in(truth).values())
    try:
        deadline = time.time() + 300
        while sum(trainings_in(truth).values()) <= held and driver.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        assert driver.poll() is None and sum(trainings_in(truth).values()) > held, driver.communicate()[1].decode()[
            -3000:
        ]
        before = trainings_in(truth)
        driver.send_signal(sig)
        err = driver.communicate(timeout=120)[1].decode()
    finally:
        if driver.poll() is None:
            driver.kill()
        with contextlib.suppress(ProcessLookupError):  # what a killed driver's local Ray leaves (never `ray stop`)
            os.killpg(driver.pid, signal.SIGKILL)
    return before, err


def finish(tmp_path) -> subprocess.CompletedProcess:
    done = subprocess.run(tiny_truth(tmp_path), cwd=ROOT, env=environment(tmp_path), capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def check_complete(tmp_path, before: Counter) -> list[dict]:
    lines = read_lines(tmp_path / "truth.jsonl")
    trainings = trainings_in(tmp_path / "truth.jsonl")
    assert len(trainings) == 4 * 1 + 2 + 1 and set(trainings.values()) == {1}  # 7 trainings, none twice
    assert all(trainings[key] == 1 for key in before)  # kept, not trained again
    per_training = Counter((d["genome"], d["seed"], d["kind"]) for d in lines)
    assert all(per_training[k] == (4 if k[2] == "convergence" else 2) for k in per_training)  # every epoch's line
    return lines


def test_a_truth_stopped_by_ctrl_c_then_sigkill_goes_on_without_duplicates_and_skips_what_it_holds(tmp_path, ray_head):
    """The two interrupted runs join the test process's Ray head (a private local Ray stopped by Ctrl-C or SIGKILL is
    test_search's); the run that finishes starts its own, as by default."""
    interrupted, err = stop_after_a_training(tmp_path, signal.SIGINT, ray_head)
    assert "Interrupted:" in err and "run the same command again" in err  # one line, exit 130
    # the second run skips what the first appended
    killed, _ = stop_after_a_training(tmp_path, signal.SIGKILL, ray_head)
    assert all(killed[key] == 1 for key in interrupted) and sum(killed.values()) < 7
    done = finish(tmp_path)
    lines = check_complete(tmp_path, killed)
    fields = {"genome", "preset", "seed", "epoch", "epochs", "ap", "loss", "flops", "params", "recipe", "kind",
              "code", "wall_seconds", "cpu_seconds"}  # fmt: skip
    assert all(fields <= set(d) for d in lines)
    assert {d["recipe"]["name"] for d in lines if d["kind"] == "truth"} == {"truth-2ep-64x64-2steps"}
    assert "/" not in json.dumps([d["recipe"] for d in lines]) and str(tmp_path) not in json.dumps(lines)
    by_seed = {}
    for d in lines:
        by_seed.setdefault((d["genome"], d["kind"], d["epoch"]), {})[d["seed"]] = d["loss"]
    assert any(len(v) == 2 and v[0] != v[1] for v in by_seed.values())  # two seeds, trained differently
    assert all(d["cpu_seconds"] > 0 and d["wall_seconds"] > 0 for d in lines)
    assert "trainings" in done.stderr and "ETA" in done.stderr
    again = finish(tmp_path)  # a third run trains nothing
    assert "7 of 7 trainings" in again.stdout
    assert len(read_lines(tmp_path / "truth.jsonl")) == len(lines)
    kept = list((tmp_path / "run" / "checkpoints").glob("*.pt"))
    assert kept and not list((tmp_path / "run" / "trainings").glob("*"))  # the largest genome's, nothing in flight


def test_a_driver_killed_between_appending_and_freeing_leaves_nothing_behind_on_the_next_run(tmp_path):
    """The state a SIGKILL between `append` and freeing the folder leaves (seen once in the suite): the next run
    frees the appended trainings' folders, moves a kept genome's final checkpoint, and leaves pending ones alone."""
    from nas.truth_run import KEPT, LINES, TRAININGS, free_appended

    def training(name: str, genome: str, lines: bool, signal: str | None = None) -> Path:
        out = tmp_path / TRAININGS / name
        out.mkdir(parents=True)
        (out / "checkpoint.pt").write_bytes(b"weights")
        if lines:
            line = {"signal": signal, "genome": genome} if signal else {"genome": genome, "kind": "truth"}
            (out / LINES).write_text(json.dumps([line]))
        return out

    appended = training("genome-s0-truth-a", "width=8", lines=True)
    kept = training("genome-s0-truth-b", "width=16", lines=True)
    ended_not_appended = training("genome-s1-truth-c", "width=8", lines=True)
    in_flight = training("genome-s0-truth-d", "width=12", lines=False)
    a_signals = training("genome-s0-truth-e", "width=8", lines=True, signal="trials-1")
    free_appended(tmp_path, {ended_not_appended.name, in_flight.name}, {"width=16"}, None)
    assert not appended.exists() and not kept.exists()
    assert (tmp_path / KEPT / f"{kept.name}.pt").read_bytes() == b"weights"
    assert (ended_not_appended / LINES).is_file() and (in_flight / "checkpoint.pt").is_file()
    assert (a_signals / LINES).is_file()  # another kind of run's training: not this run's to free
