"""Supernet training: the sandwich, distillation, resume, the CLI (train, eval, bad inputs) and its MLflow run."""

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from checkpoints.load import read_weights
from hrnas.commands import complexity as complexity_command
from hrnas.commands import supernet as supernet_command
from pose.coco import parse_data
from pose.train import Recipe, load_data
from search_space.complexity import genome_complexity
from search_space.presets import PRESETS, load_preset
from search_space.space import DEFAULT_SPACE, SearchSpace
from supernet.sampling import Candidates, candidates
from supernet.training import (
    CHECKPOINT,
    SpaceSource,
    SupernetRecipe,
    heatmap_mse,
    recipe_from_json,
    spatial_kl,
    train_supernet,
)

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "data" / "coco-mini"
MINI_DATA = f"{MINI / 'test_coco.json'}:{MINI}"
TINY_SPACE = {
    "name": "tiny",
    "base": "litehrnet-18",
    "genes": {
        "width": [8, 16],
        "modules": [[1, 1, 1], [2, 1, 1]],
        "block": ["shuffle", "weighting"],
        "dsc_groups": [1, [1, 1, 2, 4]],
        "kernels": [1, [4, 4, 2, 1]],
    },
}
RECIPE = Recipe(input_hw=(64, 64), batch=4, epochs=2, max_steps=2, threads=1)
OPTIONS = SupernetRecipe(sandwich=1, calibration=8, budget=None)
CLI = ["--data", MINI_DATA, "--input", "64x64", "--batch", "4", "--max-steps", "2", "--threads", "1"]
CLI += ["--budget", "none"]


class Killed(Exception):
    pass


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> SpaceSource:
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    return SpaceSource.from_file(path)


@pytest.fixture(scope="module")
def mini_data():
    return load_data(parse_data(MINI_DATA))


def test_the_sandwich_is_largest_smallest_and_seeded_random_genomes(tiny):
    pool = candidates(tiny.space)
    assert pool.flops[pool.genomes.index(pool.largest)] == max(pool.flops)
    assert pool.flops[pool.genomes.index(pool.smallest)] == min(pool.flops)
    step = pool.sandwich(3, seed=0, epoch=1, step=5)
    assert step[:2] == [pool.largest, pool.smallest] and len(step) == 5
    assert step == pool.sandwich(3, seed=0, epoch=1, step=5)  # every replica draws the same genomes
    assert any(pool.sandwich(3, 0, 1, s)[2:] != step[2:] for s in range(6, 12))
    budget = candidates(tiny.space, replace(OPTIONS, budget="40M").parsed_budget())
    assert 0 < len(budget.genomes) < len(pool.genomes) and max(budget.flops) <= 40 * 2**20
    assert max(budget.flops) < max(pool.flops)


def test_progressive_shrinking_samples_the_large_genomes_first(tiny, mini_data, monkeypatch):
    pool = candidates(tiny.space)  # 20 genomes
    phases = [pool.phase(3, epoch, 6) for epoch in range(6)]
    assert [len(p.genomes) for p in phases] == [7, 7, 13, 13, 20, 20]
    assert all(p.largest == pool.largest for p in phases) and phases[-1] == pool and pool.phase(1, 0, 6) == pool
    assert min(phases[0].flops) >= sorted(pool.flops, reverse=True)[6]  # the first phase: the largest third
    assert phases[0].smallest != pool.smallest and pool.top(0.01).genomes == (pool.largest,)

    sampled = []  # the pool each step drew from, by epoch
    sandwich = Candidates.sandwich
    monkeypatch.setattr(
        Candidates, "sandwich", lambda self, *a: sampled.append((a[2], len(self.genomes))) or sandwich(self, *a)
    )
    train_supernet(tiny, mini_data, replace(RECIPE, epochs=2, max_steps=1), replace(OPTIONS, progressive=2), quiet=True)
    assert set(sampled) == {(0, 10), (1, 20)}  # epoch 1 of 2 samples the larger half, epoch 2 all


def test_distillation_terms_vanish_only_at_the_teacher():
    teacher = torch.randn(2, 3, 8, 6)
    assert spatial_kl(teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert spatial_kl(teacher + torch.randn_like(teacher), teacher).item() > 0.01
    assert spatial_kl(teacher + 5.0, teacher).item() == pytest.approx(0.0, abs=1e-5)  # a softmax ignores a shift
    assert heatmap_mse(teacher, teacher).item() == 0 and heatmap_mse(teacher + 1, teacher).item() == pytest.approx(1)


def test_training_scores_the_tracked_genomes_and_distillation_changes_it(tiny, mini_data):
    result = train_supernet(tiny, mini_data, RECIPE, OPTIONS, quiet=True)
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert set(result["tracked"]) == {"largest", "smallest"}  # no preset is a point of the tiny space
    assert all(0 <= result[f"ap.{name}"] <= 1 for name in result["tracked"])
    assert result["loss"] > 0 and result["loss_largest"] > 0 and result["sampled_genomes"] == 20
    one_step = replace(RECIPE, epochs=1, max_steps=1)
    distilled = train_supernet(tiny, mini_data, one_step, OPTIONS, quiet=True)
    without = train_supernet(tiny, mini_data, one_step, replace(OPTIONS, distill=False), quiet=True)
    assert without["loss_largest"] == pytest.approx(distilled["loss_largest"], rel=1e-6)  # the teacher's own loss
    assert distilled["loss_smallest"] > without["loss_smallest"] + 1e-4  # + KL to the teacher


def test_killed_training_resumes_where_it_stopped(tiny, mini_data, tmp_path):
    recipe = replace(RECIPE, epochs=3)
    whole = train_supernet(tiny, mini_data, recipe, OPTIONS, quiet=True)

    def kill_after_first_epoch(record):
        if record["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        train_supernet(tiny, mini_data, recipe, OPTIONS, tmp_path, kill_after_first_epoch, quiet=True)
    assert (tmp_path / CHECKPOINT).is_file()
    seen = []
    resumed = train_supernet(tiny, mini_data, recipe, OPTIONS, tmp_path, seen.append, quiet=True)
    assert [r["epoch"] for r in seen] == [2, 3]
    assert [h["loss"] for h in resumed["history"]] == pytest.approx([h["loss"] for h in whole["history"]], rel=1e-5)
    assert resumed["ap.largest"] == pytest.approx(whole["ap.largest"], abs=1e-6)
    with pytest.raises(ValueError, match="supernet of another recipe"):
        train_supernet(tiny, mini_data, replace(recipe, lr=1e-4), OPTIONS, tmp_path, quiet=True)
    assert recipe_from_json(json.loads(json.dumps(torch.load(tmp_path / CHECKPOINT)["meta"]))["recipe"]) == recipe


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = supernet_command.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_trains_logs_one_mlflow_run_and_scores_a_genome(tiny, tmp_path, capsys):
    out, storage = tmp_path / "sn", tmp_path / "store"
    train = ["train", "--space", str(tmp_path / "tiny.yaml"), *CLI, "--epochs", "2", "--sandwich", "1"]
    (tmp_path / "tiny.yaml").write_text(tiny.text)
    args = [*train, "--calibration", "8", "--out", str(out), "--storage", str(storage), "--json"]
    code, stdout, stderr = _run(args, capsys)
    assert code == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and set(summary["tracked"]) == {"largest", "smallest"}
    assert "epoch 2/2" in stderr and "ETA" in stderr
    assert (out / "curves.png").stat().st_size > 0 and (out / CHECKPOINT).is_file()

    client = MlflowClient(f"sqlite:///{storage / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("hrnas-supernet")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["kind"] == "supernet" and runs[0].info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "ap.largest")] == [1, 2]
    assert runs[0].data.params["sandwich"] == "1" and runs[0].data.params["space"] == "tiny"
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"curves.png", "space.yaml", "result.json"} <= artifacts and CHECKPOINT not in artifacts  # stored once
    assert runs[0].data.tags["checkpoint"] == str((out / CHECKPOINT).resolve())

    # the finished training rerun: nothing trained again, the same MLflow run
    code, stdout, stderr = _run(args, capsys)
    assert code == 0 and "first training step" not in stderr
    assert len(client.search_runs([experiment.experiment_id])) == 1

    genome = load_preset("litehrnet-18").with_genes({"width": 16, "modules": [2, 1, 1], "dsc_groups": [1, 1, 2, 4]})
    genes = ["--gene", "width=16", "--gene", "modules=[2,1,1]", "--gene", "dsc_groups=[1,1,2,4]"]
    saved = tmp_path / "net.pt"
    evaluate = ["eval", "--supernet", str(out), "--arch", "litehrnet-18", *genes, "--calibration", "8"]
    code, stdout, stderr = _run([*evaluate, "--save", str(saved), "--json"], capsys)
    assert code == 0, stderr
    scored = json.loads(stdout.strip().splitlines()[-1])
    assert {"ap", "ap50", "ap75", "ar", "flops", "params", "genome"} <= scored.keys()
    assert scored["genome"] == genome.canonical_line()
    assert complexity_command.main(["--arch", "litehrnet-18", *genes, "--json"]) == 0
    counted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (scored["flops"], scored["params"]) == (counted["flops"], counted["params"])
    weights = read_weights(saved, genome).renamed.state
    assert (
        sum(v.numel() for k, v in weights.items() if "running" not in k and "num_batches" not in k) == scored["params"]
    )
    code, again, _ = _run([*evaluate, "--json"], capsys)
    assert json.loads(again.strip().splitlines()[-1])["ap"] == scored["ap"]  # a fixed calibration set: deterministic

    # the saved network fine-tunes with `hrnas train --init-from`; another architecture's weights are refused
    from hrnas.commands import train as train_command

    tune = ["--arch", "litehrnet-18", *genes, *CLI[:-2], "--epochs", "1", "--lr", "0", "--json"]
    assert train_command.main([*tune, "--init-from", str(saved)]) == 0
    tuned = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert train_command.main(tune) == 0
    scratch = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert tuned["loss"] != pytest.approx(scratch["loss"], rel=1e-3)  # it started from other weights
    assert train_command.main(["--arch", "litehrnet-18", "--init-from", str(saved), *CLI[:-2]]) == 2
    assert "--init-from" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--space", "nowhere.yaml"], "does not exist"),
        (["train", "--budget", "lots"], "cannot read budget"),
        (["train", "--sandwich", "-1"], "--sandwich -1"),
        (["train", "--calibration", "0"], "--calibration 0"),
        (["train", "--ddp", "2", "--batch", "5"], "does not split evenly"),
        (["eval", "--supernet", "nowhere", "--arch", "litehrnet-18"], "no supernet checkpoint"),
    ],
)
def test_bad_input_is_one_error_line(argv, message, tmp_path, capsys):
    out = ["--out", str(tmp_path / "o")] if argv[0] == "train" else []
    code, _, stderr = _run([*argv, *out], capsys)
    assert code == 2 and message in stderr and stderr.count("\n") == 1, stderr
    assert not (tmp_path / "o").exists()


def test_a_genome_outside_the_space_and_another_space_are_refused(tiny, mini_data, tmp_path, capsys):
    out = tmp_path / "sn"
    train_supernet(tiny, mini_data, replace(RECIPE, epochs=1), OPTIONS, out, quiet=True)
    (out / "data.json").write_text(json.dumps({"data": MINI_DATA, "val": None}))
    code, _, stderr = _run(["eval", "--supernet", str(out), "--arch", "litehrnet-18"], capsys)
    assert code == 2 and "gene modules=2,4,2 is not among the space's choices ['1,1,1', '2,1,1']" in stderr
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**TINY_SPACE, "genes": {**TINY_SPACE["genes"], "width": [8, 24]}}))
    before = (out / CHECKPOINT).stat().st_mtime_ns
    args = ["train", "--space", str(other), *CLI, "--epochs", "1", "--sandwich", "1", "--calibration", "8"]
    code, _, stderr = _run([*args, "--out", str(out), "--storage", str(tmp_path / "store")], capsys)
    assert code == 2 and "supernet of another search space" in stderr
    assert (out / CHECKPOINT).stat().st_mtime_ns == before and not (tmp_path / "store").exists()


def test_eval_counts_like_complexity_for_random_genomes_and_presets(capsys):
    """`supernet eval --json` reports `genome_complexity`'s torchstat FLOPs and params at 256x192: the figures of
    `hrnas complexity --json` for 20 random genomes of the default space and every Lite/Dite preset."""
    space = SearchSpace.from_file(DEFAULT_SPACE)
    genomes = random.Random(0).sample(list(space.valid_genomes()), 20)
    genomes += [load_preset(p) for p in PRESETS if "litehrnet" in p or "ditehrnet" in p]
    for genome in genomes:
        complexity = genome_complexity(genome)
        args = ["--arch", "litehrnet-18", *[a for g in _gene_args(genome) for a in ("--gene", g)], "--json"]
        assert complexity_command.main(args) == 0
        counted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert counted["genome"] == genome.compact()
        assert (complexity.flops["torchstat"], complexity.params) == (counted["flops"], counted["params"])


def _gene_args(genome) -> list[str]:
    from search_space.space import encode

    text = {name: encode(value) for name, value in genome.genes.items()}
    return [f"{n}={f'[{t}]' if ',' in t else t}" for n, t in text.items()]  # lists as YAML, per stage with /
