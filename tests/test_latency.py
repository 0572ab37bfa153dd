"""Latency: settings checked before any work, measurement on both runtimes, and the per-part latency table fitted
on a tiny space (real onnxruntime and PyTorch; no figure is asserted against a clock, only how figures relate)."""

import json
import math

import numpy as np
import pytest
import torch

from search_space.latency import Latency, LatencyError, Setting, measure_latencies, of_samples, parse_setting
from search_space.latency_table import (
    FULL_FIT_MINIMUM,
    LatencyTable,
    fit_space,
    fit_table,
    genome_parts,
    least_squares,
    load_table,
    predict_latency,
    random_genomes,
    table_path,
    time_part,
)
from search_space.space import SearchSpace
from tests.scripts import run_script
from tests.test_search import space_file

SMALL = Setting(input_hw=(64, 64))  # tiny inputs keep every timing short


assert space_file  # the fixture (the tiny space of the search tests), imported for these tests


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"runtime": "tvm"}, "--runtime 'tvm': choose one of ort, torch"),
        ({"device": "tpu"}, "--device 'tpu': choose one of cpu, cuda"),
        ({"batch": 0}, "both must be at least 1"),
        ({"threads": 0}, "both must be at least 1"),
    ],
)
def test_bad_settings_name_the_option(kwargs, message):
    with pytest.raises(LatencyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_setting(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_cuda_is_refused():
    with pytest.raises(LatencyError, match="no CUDA device"):
        parse_setting(device="cuda")


def test_samples_give_median_and_interquartile_range():
    latency = of_samples([0.001, 0.002, 0.003, 0.004, 0.100], SMALL)
    assert latency.median_ms == pytest.approx(3.0) and latency.runs == 5
    assert latency.p25_ms <= latency.median_ms <= latency.p75_ms and latency.spread_ms > 0
    assert Setting().describe() == "ort on cpu, batch 1, 1 thread, 256x192"
    assert Setting(threads=2).tags()["latency_threads"] == "2" and Setting().tags()["latency_input_hw"] == "256x192"


@pytest.mark.parametrize("runtime", ["ort", "torch"])
def test_both_runtimes_measure_a_tiny_genome(runtime, space_file):
    genome = SearchSpace.from_file(space_file).base
    setting = Setting(runtime=runtime, batch=2, input_hw=(64, 64))
    measured = measure_latencies({"a": genome}, setting, seconds=0.3)["a"]
    assert isinstance(measured, Latency) and measured.setting == setting
    assert measured.runs >= 15 and 0 < measured.p25_ms <= measured.median_ms <= measured.p75_ms
    assert math.isfinite(measured.median_ms)


def test_parts_are_shared_between_genomes_and_timed_once(space_file, tmp_path):
    space = SearchSpace.from_file(space_file)
    genomes = random_genomes(space, 4, seed=0)
    assert len({g.compact() for g in genomes}) == 4
    keys = [{k for k, _, _ in genome_parts(g, SMALL)} for g in genomes]
    union = set().union(*keys)
    assert len(union) < sum(len(k) for k in keys)  # the stem and the blocks of equal width are one entry each
    setting = Setting(runtime="torch", input_hw=(64, 64))
    table, path = fit_space(space, setting, {}, count=4, folder=tmp_path / "tables", cover_count=0)
    assert path == table_path(setting, folder=tmp_path / "tables") and path.is_file()
    assert set(table.parts) == {k for g in genomes for k, _, _ in genome_parts(g, setting)}
    assert all(v > 0 for v in table.parts.values()) and table.fitted_on == [g.canonical_line() for g in genomes]
    # the prediction is the fitted line through the sum of the genome's parts
    for g in genomes:
        keys = [k for k, _, _ in genome_parts(g, setting)]
        raw = sum(table.parts[k] for k in keys)
        expected = table.scale * raw + table.per_part_ms * len(keys) + table.offset_ms
        assert table.predict(g) == pytest.approx(expected)
    # saved and read back unchanged
    again = load_table(setting, folder=tmp_path / "tables")
    assert again is not None and again.to_json() == table.to_json()
    assert LatencyTable.from_json(json.loads(path.read_text())).parts == table.parts


def test_the_correction_fits_three_parameters_only_where_the_data_can_carry_them():
    """Enough genomes on a known line give the line back; too few (or counts that move with the sums) give the
    scale alone, whose prediction stays positive where three interpolating parameters predicted a negative one."""
    line = (0.8, -0.05, 2.0)
    features = [(10.0 + 7 * i, 20 + (i * 5) % 11) for i in range(FULL_FIT_MINIMUM)]
    measured = [line[0] * s + line[1] * c + line[2] for s, c in features]
    assert least_squares(features, measured) == pytest.approx(line)
    few = [(10.0, 20), (12.0, 20), (15.0, 24)]
    exact = [9.0, 12.0, 11.0]  # three points three parameters would pass through exactly
    interpolated = np.linalg.solve(np.array([[s, c, 1.0] for s, c in few]), np.array(exact))
    assert interpolated @ [30.0, 60, 1] < 0  # a deeper genome's prediction by the three: what the scale avoids
    scale, per_part, offset = least_squares(few, exact)
    assert scale > 0 and per_part == offset == 0.0
    collinear = [(10.0 + i, 20) for i in range(FULL_FIT_MINIMUM + 2)]  # one part count: count and offset coincide
    assert least_squares(collinear, [s * 0.9 for s, _ in collinear]) == pytest.approx((0.9, 0.0, 0.0))


def test_a_part_alone_exports_and_times_on_onnxruntime(space_file, tmp_path):
    setting = Setting(input_hw=(64, 64))
    parts = genome_parts(SearchSpace.from_file(space_file).base, setting)
    branched = next((p, s) for _, p, s in parts if s and isinstance(s[0], tuple))  # a part of several branches
    for part, shapes in (parts[0][1:], branched):
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        assert time_part(part, shapes, setting, folder) > 0 and (folder / "model.onnx").is_file()


def test_a_genome_outside_the_table_has_its_parts_timed_and_kept(space_file, tmp_path, monkeypatch):
    monkeypatch.setenv("HRNAS_CACHE", str(tmp_path / "cache"))
    space = SearchSpace.from_file(space_file)
    setting = Setting(runtime="torch", input_hw=(64, 64))
    narrow = space.base  # width 8, channel weighting
    table = fit_table([narrow, space.genome({**space.params_of(narrow), "gene.width": "12"})], setting)
    table.save(table_path(setting))
    outside = space.genome({**space.params_of(narrow), "gene.width": "16", "gene.block": "shuffle"})
    assert not table.covers(outside)
    before = len(table.parts)
    with pytest.raises(KeyError):
        table.predict(outside)
    predicted = predict_latency(table, outside)
    assert predicted == pytest.approx(table.predict(outside)) and len(table.parts) > before
    assert load_table(setting) is not None and load_table(setting).covers(outside)


def test_complexity_latency_cli_measures_and_predicts(space_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HRNAS_CACHE", str(tmp_path / "cache"))
    common = ["--input", "64x64", "--runtime", "torch", "--seconds", "0.3"]
    code, out, err = run_script(capsys, "complexity", "--arch", "litehrnet-18", "--gene", "width=8", "--latency",
                                *common, "--json")  # fmt: skip
    assert code == 0, err
    record = json.loads(out.strip().splitlines()[-1])
    assert record["latency_ms"] > 0 and record["runtime"] == "torch" and record["threads"] == 1
    assert "predicted_latency_ms" not in record
    code, out, err = run_script(capsys, "complexity", "--fit-latency", "--space", str(space_file), "--fit-genomes",
                                "3", *common, "--json")  # fmt: skip
    assert code == 0, err
    fitted = json.loads(out.strip().splitlines()[-1])
    assert fitted["genomes"] == 3 and fitted["parts"] > 0 and "parts timed" in err
    code, out, err = run_script(capsys, "complexity", "--arch", "litehrnet-18", "--gene", "width=8", "--latency",
                                *common, "--json")  # fmt: skip
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["predicted_latency_ms"] > 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--latency", "--runtime", "tvm"], "--runtime 'tvm'"),
        (["--latency", "--seconds", "0"], "--seconds 0"),
        (["--fit-latency", "--fit-genomes", "2"], "--fit-genomes 2"),
    ],
)
def test_bad_latency_options_fail_before_measuring(capsys, extra, message):
    code, _, err = run_script(capsys, "complexity", "--arch", "litehrnet-18", *extra)
    assert code == 2 and message in err


def test_complexity_without_arch_says_what_to_give(capsys):
    code, _, err = run_script(capsys, "complexity")
    assert code == 2 and "--arch: give a preset or a genome file" in err


def test_latency_budget_three_objective_search_end_to_end(tmp_path, space_file, monkeypatch, ray_head):
    """A latency budget between the tiny space's genomes and a three-objective front: no trained genome's predicted
    latency over the budget, every run measured, and the front and hypervolume MLflow holds recomputed by brute
    force."""
    import subprocess

    from mlflow.tracking import MlflowClient

    from analysis.pareto import hypervolume_nd, non_dominated
    from tests.test_search import ROOT, environment, search_command

    cache = tmp_path / "cache"
    monkeypatch.setenv("HRNAS_CACHE", str(cache))
    env = {**environment(tmp_path, ray_head), "HRNAS_CACHE": str(cache)}
    space = SearchSpace.from_file(space_file)
    setting = Setting(runtime="torch")  # onnxruntime's exports would triple the time (its path: the tests above)
    table, _ = fit_space(space, setting, {}, count=4)  # what the search would fit itself, fitted here to see it
    predicted = sorted(table.predict(g) for g in space.valid_genomes())
    budget = (predicted[2] + predicted[3]) / 2
    command = [*search_command(tmp_path, space_file, "--trials", "4"), "--budget", f"{budget:.4f}ms",
               "--objectives", "ap,flops,latency", "--latency-runtime", "torch"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "this machine's table" in done.stderr  # the cached table, not a new fit
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["objectives"] == "ap,flops,latency" and summary["budget_ms"] == pytest.approx(budget, abs=1e-4)
    client = MlflowClient(summary["tracking_uri"])
    runs = client.search_runs(
        [summary["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'"
    )
    assert 1 <= len(runs) <= 3  # three of the six genomes fit
    for r in runs:
        assert r.data.metrics["predicted_latency_ms"] <= budget + 1e-4 and r.data.metrics["latency_ms"] > 0
        assert r.data.tags["latency_runtime"] == "torch" and r.data.tags["latency_threads"] == "1"
    vectors = {r.info.run_id: (-r.data.metrics["ap"], r.data.metrics["flops"], r.data.metrics["predicted_latency_ms"])
               for r in runs}  # fmt: skip
    assert {r.info.run_id for r in runs if r.data.tags["pareto"] == "true"} == non_dominated(vectors)
    reference = (0.0, max(v[1] for v in vectors.values()), budget)
    front = [vectors[k] for k in non_dominated(vectors)]
    expected = hypervolume_nd(front, reference) / (reference[1] * reference[2])
    assert summary["hypervolume"] == pytest.approx(expected, rel=1e-4, abs=1e-9)
    rejected = [json.loads(line) for line in (tmp_path / "runs" / "t" / "rejected.jsonl").read_text().splitlines()
                if line.strip()] if (tmp_path / "runs" / "t" / "rejected.jsonl").is_file() else []  # fmt: skip
    assert all(r["predicted_latency_ms"] > budget for r in rejected if r["reason"].startswith("over budget"))
    report = tmp_path / "runs" / "t" / "report"
    assert (report / "pareto.png").is_file() and (report / "pareto-latency.png").is_file()
    assert "predicted_latency_ms" in (report / "pareto.csv").read_text().splitlines()[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--budget", "40ms"], "--budget 40ms is a latency budget, but --objectives ap,flops has no latency"),
        (["--budget", "40ms", "--objectives", "ap,latency", "--latency-runtime", "tvm"], "--latency-runtime 'tvm'"),
        (["--objectives", "ap,latency", "--latency-device", "cuda"], "no CUDA device"),
        (["--budget", "40 minutes"], "or a latency with a time unit, e.g. 40ms"),
    ],
)
def test_bad_latency_search_input_fails_before_anything_starts(tmp_path, capsys, space_file, extra, message):
    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("checks the refusal on a machine without CUDA")
    code, _, err = run_script(capsys, "search", "--budget", "40MFLOPs", "--space", str(space_file), "--storage",
                              str(tmp_path / "runs"), *extra)  # fmt: skip
    assert code == 2 and message in err, err
    assert not (tmp_path / "runs" / "hrnas-search").exists()


def test_ablation_table_gains_a_measured_latency_column(tmp_path, capsys):
    from tests.test_ablation import TINY

    table = tmp_path / "tiny.yaml"
    table.write_text(TINY)
    code, out, err = run_script(capsys, "ablate", "--table", str(table), "--complexity-only", "--latency", "--json")
    assert code == 0, err
    rows = json.loads(out.strip().splitlines()[-1])["rows"]
    assert len(rows) == 2 and all(r["latency_ms"] > 0 for r in rows)
    assert "latency_ms" in out and "ort on cpu, batch 1, 1 thread, 256x192" in out


def test_an_onnxruntime_that_fell_back_to_the_cpu_is_an_error_not_a_cuda_latency():
    from search_space.latency import check_provider

    check_provider(["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda")
    check_provider(["CPUExecutionProvider"], "cpu")
    with pytest.raises(LatencyError, match="runs this network on CPUExecutionProvider, not CUDAExecutionProvider"):
        check_provider(["CPUExecutionProvider"], "cuda")


def test_the_bound_run_computes_what_a_plain_run_does(tmp_path):
    """The I/O-bound inference a CUDA latency times (input placed once, output left on the device), exercised here on
    the CPU: the same heatmaps as session.run."""
    import onnxruntime

    from blocks.network import PoseNet
    from blocks.onnx_export import export_onnx
    from search_space.latency import bound_run
    from tests.test_training import TINY

    path = tmp_path / "tiny.onnx"
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    export_onnx(PoseNet(TINY.resolve(17)).eval(), x, path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    (bound,) = bound_run(session, feed, "cpu")()
    np.testing.assert_array_equal(bound.numpy(), session.run(None, feed)[0])
