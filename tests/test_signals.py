"""`hrnas bench signals`: the zero-cost proxies on real networks, and every kind of signal computed end to end on a
tiny truth (counts, proxies, a trained signal as Ray trials, a one-shot supernet), then `hrnas fidelity` over them."""

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from blocks.network import PoseNet
from fidelity.proxies import PROXIES, proxy_batch, proxy_score
from fidelity.signals import ONE_SHOT_SCORES, SIGNALS, OneShotVariant, signal_spec, split_spaces
from fidelity.truth import Plan, append, lines_of, read_sample
from hrnas.commands.bench import build_parser as truth_parser
from hrnas.commands.bench import truth_recipe
from pose.train import Recipe, load_data
from search_space.genome import Genome
from search_space.space import SearchSpace
from tests.scripts import run_script
from tests.test_search import MINI_DATA

ROOT = Path(__file__).resolve().parents[1]
TINY_BASE = "stem: lite\nwidth: 8\nmodules: [1, 1, 1]\nblocks: 1\nblock: weighting\n"


@pytest.fixture(scope="module")
def batch_and_recipe():
    recipe = replace(Recipe(), input_hw=(64, 64), threads=1)
    return proxy_batch(load_data(None), recipe, size=8), recipe


@pytest.mark.parametrize("name", list(PROXIES))
def test_each_proxy_scores_real_networks_finitely_and_tells_them_apart(name, batch_and_recipe):
    batch, recipe = batch_and_recipe
    small = Genome.from_compact("stem=lite width=8 modules=1,1,1 blocks=1 block=weighting")
    wide = small.with_genes({"width": 16})
    scores = [proxy_score(name, g, batch, recipe) for g in (small, wide, small)]
    assert all(math.isfinite(s) for s in scores), scores
    assert scores[0] == pytest.approx(scores[2])  # the seeded initialisation: the same score again
    assert scores[0] != pytest.approx(scores[1])


def test_signal_names_are_a_registry_with_one_shot_lengths():
    assert {"flops", "params", "latency", "latency-measured", "one-shot", "synflow", "naswot", "grad-norm", "snip",
            "trials-1", "trials-2", "trials-4", "train-12"} <= set(SIGNALS)  # fmt: skip
    assert signal_spec("one-shot-6ep").epochs == 6 and signal_spec("one-shot-6ep").subset
    variant = signal_spec("one-shot-12ep-init-cal1024-ft20")
    assert (variant.epochs, variant.one_shot) == (12, OneShotVariant(12, True, 1024, 20))
    assert variant.one_shot.supernet_folder() == "supernet-12ep-init" and variant.subset
    assert (
        signal_spec("one-shot-cal64").one_shot.supernet_folder() == signal_spec("one-shot").one_shot.supernet_folder()
    )
    shrinking = signal_spec("one-shot-12ep-ps3-init").one_shot
    assert (shrinking.progressive, shrinking.supernet_folder()) == (3, "supernet-12ep-ps3-init")
    lean = signal_spec("one-shot-6ep-sw0-init").one_shot  # a sandwich of the largest and the smallest only
    assert (lean.sandwich, lean.init, lean.supernet_folder()) == (0, True, "supernet-6ep-sw0-init")
    assert signal_spec("one-shot").one_shot.sandwich is None
    split = signal_spec("one-shot-6ep-split-stem-ft5").one_shot
    assert (split.split, split.finetune_steps, split.supernet_folder()) == ("stem", 5, "supernet-6ep-split-stem")
    for wrong in ("one-shot-0ep", "one-shot-ft0", "one-shot-cal4-6ep", "one-shot-ep", "one-shot-split-colour",
                  "one-shot-init-sw1", "one-shot-sw"):  # fmt: skip
        with pytest.raises(ValueError, match="one-shot\\[-<N>ep\\]"):
            signal_spec(wrong)
    with pytest.raises(ValueError, match="unknown signal 'zen'"):
        signal_spec("zen")


def test_a_few_shot_split_is_a_sub_space_per_value_of_the_gene():
    hybrid = "{stages: [shuffle, weighting, weighting]}"
    text = f"name: s\nbase: litehrnet-18\ngenes: {{width: [30, 40], block: [shuffle, weighting, {hybrid}]}}\n"
    parts = [yaml.safe_load(t) for t in split_spaces(text, "block")]
    assert [p["name"] for p in parts] == ["s-block0", "s-block1", "s-block2"]
    assert [p["genes"]["block"] for p in parts] == [
        ["shuffle"],
        ["weighting"],
        [{"stages": ["shuffle", "weighting", "weighting"]}],
    ]
    assert all(p["genes"]["width"] == [30, 40] for p in parts)
    spaces = [SearchSpace.from_dict(p) for p in parts]
    assert sum(s.size() for s in spaces) == SearchSpace.from_dict(yaml.safe_load(text)).size()
    with pytest.raises(ValueError, match="does not choose stem"):
        split_spaces(text, "stem")


def keep_checkpoint(truth_folder: Path, genome: Genome) -> Path:
    """A kept final checkpoint of `genome` as `hrnas bench truth` leaves one (seeded weights, not trained)."""
    from pose.weights import save_model_weights

    path = truth_folder / "checkpoints" / "genome-s0-truth-0123456789ab.pt"
    return save_model_weights(path, PoseNet(genome.resolve()), genome)


def environment(tmp_path, ray_address: str) -> dict:
    """The commands join the test process's shared Ray head (fixture `ray_head`) through RAY_ADDRESS."""
    return dict(os.environ, HRNAS_CACHE=str(tmp_path.parent / "hrnas-cache"), RAY_ADDRESS=ray_address,
                RAY_AUTH_MODE="token")  # fmt: skip


def hrnas(tmp_path, ray_address: str, *args) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "hrnas.cli", *args], cwd=ROOT, env=environment(tmp_path, ray_address),
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def write_truth(tmp_path, capsys, space: Path) -> Path:
    """A truth of the tiny space as `hrnas bench truth` leaves it: its sample (written by `--plan`) and a line per
    epoch of every training of its plan, with made-up APs (test_truth runs such trainings; here they only feed the
    signals and `hrnas fidelity`)."""
    truth = tmp_path / "truth.jsonl"
    argv = ["--space", str(space), "--max-steps", "2", "--budget", "1G", "--genomes", "5", "--strata", "1",
            "--seeded", "2", "--convergence", "1", "--epochs", "1", "--input", "64x64", "--data", MINI_DATA,
            "--out", str(truth)]  # fmt: skip
    code, _, err = run_script(capsys, "bench", "truth", *argv, "--plan")
    assert code == 0, err
    members = read_sample(truth).members
    args = truth_parser().parse_args(argv)
    plan = Plan.build(members, truth_recipe(args), args.seeds, int(args.seeded), args.convergence, {})
    rank = {m.genome: i for i, m in enumerate(sorted(members, key=lambda m: m.flops))}
    for job in plan.jobs:
        epochs = range(1, job.recipe.recipe.epochs + 1)
        history = [{"epoch": e, "ap": 0.1 * rank[job.member.genome] + 0.01 * job.seed + 0.001 * e, "loss": 1.0}
                   for e in epochs]  # fmt: skip
        clock = [{"wall_seconds": float(e), "cpu_seconds": float(e)} for e in epochs]
        append(truth, lines_of(job, history, clock, "test"))
    return truth


def test_every_kind_of_signal_end_to_end_then_fidelity(tmp_path, capsys, ray_head, monkeypatch):
    base, space = tmp_path / "base.yaml", tmp_path / "space.yaml"
    base.write_text(TINY_BASE)
    space.write_text(f"name: tiny\nbase: {base}\ngenes: {{width: [8, 12, 16], block: [shuffle, weighting]}}\n")
    truth = write_truth(tmp_path, capsys, space)
    tiny = ["--space", str(space), "--max-steps", "2"]
    # the signals score on the truth's data: coco-mini (14 people to score instead of the synthetic default's 298)
    assert json.loads((tmp_path / "truth.genomes.json").read_text())["data"] == MINI_DATA
    # one-shot variants: another calibration count and a fine-tune share the 1-epoch supernet; `-init` trains its own
    # from the truth's kept checkpoint of its largest genome (here one of seeded weights)
    variants = ["one-shot-1ep-cal4-ft2", "one-shot-1ep-init", "one-shot-1ep-split-block", "one-shot-2ep-ps2-sw0"]
    signals = ["flops", "synflow", "naswot", "grad-norm", "snip", "trials-1", "one-shot-1ep", *variants]
    largest = max(read_sample(truth).members, key=lambda m: m.flops).genome
    kept = keep_checkpoint(tmp_path / "truth-run", Genome.from_canonical(largest))
    run = ["bench", "signals", "--truth", str(truth), *tiny, "--subset", "5", "--folder", str(tmp_path / "signals")]
    run += ["--truth-folder", str(tmp_path / "truth-run")]
    hrnas(tmp_path, ray_head, *run, *(f"--signal={s}" for s in signals))
    lines = [json.loads(t) for t in (tmp_path / "signals.jsonl").read_text().splitlines()]
    counts = {s: sum(d["signal"] == s for d in lines) for s in signals}
    assert counts == {"flops": 5, "synflow": 10, "naswot": 10, "grad-norm": 10, "snip": 10, "trials-1": 5,
                      "one-shot-1ep": 5, "one-shot-1ep-cal4-ft2": 5, "one-shot-1ep-init": 5,
                      "one-shot-1ep-split-block": 5, "one-shot-2ep-ps2-sw0": 5}  # fmt: skip
    folders = sorted(p.name for p in (tmp_path / "signals").glob("supernet-*"))
    assert folders == ["supernet-1ep", "supernet-1ep-init", "supernet-1ep-split-block", "supernet-2ep-ps2-sw0"]
    split = tmp_path / "signals" / "supernet-1ep-split-block"
    assert all((split / str(i) / "result.json").is_file() for i in (0, 1))  # a sub-supernet per block value
    from supernet.training import CHECKPOINT, restore

    shrunk = restore(tmp_path / "signals" / "supernet-2ep-ps2-sw0" / CHECKPOINT)[3]
    assert (shrunk.progressive, shrunk.sandwich) == (2, 0)
    init_arch = Genome.from_file(tmp_path / "signals" / "supernet-1ep-init" / "init-arch.yaml")
    assert init_arch.canonical_line() == largest and kept.is_file()
    plain = {"signal", "genome", "seed", "score", "cpu_seconds"}
    assert all(set(d) == plain for d in lines if not d["signal"].startswith("one-shot"))
    # a one-shot line carries its supernet training's CPU (paid once), of which its cpu_seconds holds a share
    one_shot = [d for d in lines if d["signal"].startswith("one-shot")]
    assert all(set(d) == plain | {"one_off_cpu_seconds"} for d in one_shot)
    assert all(d["one_off_cpu_seconds"] > 0 and d["cpu_seconds"] > d["one_off_cpu_seconds"] / ONE_SHOT_SCORES
               for d in one_shot)  # fmt: skip
    again = hrnas(tmp_path, ray_head, *run, *(f"--signal={s}" for s in signals))  # nothing computed twice
    assert len((tmp_path / "signals.jsonl").read_text().splitlines()) == len(lines)
    assert "trials-1: 0 to compute" in again.stderr
    code, out, err = run_script(capsys, "fidelity", "--truth", str(truth), "--json")
    assert code == 0, err
    rows = json.loads(out.strip().splitlines()[-1])
    assert {r["signal"] for r in rows if "signal" in r} == {*signals, "params"}
    by = {r["signal"]: r for r in rows if "signal" in r}
    assert by["one-shot-1ep"]["one_off_cpu_seconds"] == max(
        d["one_off_cpu_seconds"] for d in one_shot if d["signal"] == "one-shot-1ep"
    )
    assert by["trials-1"]["one_off_cpu_seconds"] == 0.0
    assert rows[-1]["seed_ceiling"]["n"] == 2
    # a variant that reuses a trained supernet scores at --threads too (the training used to be what set them)
    import supernet.score

    seen, real = [], supernet.score.score
    monkeypatch.setattr(supernet.score, "score", lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        code, _, err = run_script(capsys, *run, "--signal=one-shot-1ep-cal2", "--threads", "1")
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err
    assert "training the supernet" not in err and seen == [1] * 5
