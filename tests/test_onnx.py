"""ONNX export (experiments/export.py): every preset and some hybrids run in onnxruntime as in PyTorch (1e-4)."""

import pytest
import torch

from hrnas.commands import export
from search_space.genome import parse_gene_override
from search_space.presets import PRESETS, load_architecture


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: with two and the other core busy, OpenMP barriers spin and exports take 10x longer."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Run with one module per stage (modules=[1,1,1]) to keep the file fast: the same ops as at full depth.
HYBRIDS = [
    ("litehrnet-18", ["cross=dcm", "within=gcm"]),  # Dite's context modules in Lite-HRNet
    ("ditehrnet-18", ["kernels=1"]),  # static depthwise kernels in the stages (the Dite stem stays dynamic)
    ("ditehrnet-18", ["fuse=sum"]),
    ("litehrnet-18", ["kernels=[4,4,2,1]", "dsc_groups=[1,1,2,4]", "head=simple"]),  # Dite's dynamic convs
    ("litehrnet-18", ["block=shuffle/weighting/weighting", "cross=none/crw/dcm"]),  # genes per stage
]


def _export_and_compare(tmp_path, arch, genes, size="128x96"):
    out = tmp_path / "model.onnx"
    argv = ["--arch", arch, "--input", size, "--out", str(out), "--init", "random", "--seed", "1"]
    for gene in genes:
        argv += ["--gene", gene]
    assert export.main(argv) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # weights inside, no external data file

    genome = load_architecture(arch).with_genes(dict(parse_gene_override(g) for g in genes))
    height, width = export.parse_input_size(size)
    model = export.build_model(genome, 17, (height, width), "random", seed=1)
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(7))
    diff, scale = export.max_abs_diff(model, out, x)
    assert scale > 1e-3  # random weights: the comparison is not between two near-zero maps
    assert diff <= 1e-4, f"{arch} {genes}: onnxruntime differs from PyTorch by {diff:.3g}"

    rows = export.describe(out)
    assert rows == [
        ("input", "image", [1, 3, height, width], "float32"),
        ("output", "heatmaps", [1, 17, height // 4, width // 4], "float32"),
    ]


@pytest.mark.parametrize("arch", PRESETS)
def test_preset_exports_and_matches(tmp_path, arch):
    # The -30 presets are the -18 ones' ops at full depth: exported whole, at a smaller input (3x faster)
    _export_and_compare(tmp_path, arch, [], "64x64" if arch.endswith("-30") else "128x96")


@pytest.mark.parametrize(("arch", "genes"), HYBRIDS, ids=[" ".join(g) for _, g in HYBRIDS])
def test_hybrid_exports_and_matches(tmp_path, arch, genes):
    _export_and_compare(tmp_path, arch, ["modules=[1,1,1]", *genes], "64x64")


def test_dynamo_exporter(tmp_path, capsys):
    out = tmp_path / "small.onnx"
    genes = ["modules=[1]", "within_ratio=4", "dsc_groups=[1,2]", "kernels=[4,2]"]  # two-branch Dite-HRNet
    argv = ["--arch", "ditehrnet-18", "--input", "64x64", "--out", str(out)]
    for gene in genes:
        argv += ["--gene", gene]
    assert export.main([*argv, "--exporter", "dynamo", "--check"]) == 0
    printed = capsys.readouterr().out
    assert "opset 18" in printed and "weights: random" in printed  # no --checkpoint or --run: said, not hidden
    assert [p.name for p in tmp_path.iterdir()] == ["small.onnx"]


def test_channels_last_model_exports(tmp_path):
    """A model in the fast training configuration (channels-last, fast dynamic kernels) exports the same function."""
    from blocks.network import prepare_for_training, prepare_input

    genes = {"modules": [1], "within_ratio": 4, "dsc_groups": [1, 2], "kernels": [4, 2]}
    model = export.build_model(load_architecture("ditehrnet-18").with_genes(genes), 17, (64, 64))
    prepare_for_training(model, fast=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    export.export_onnx(model, x, tmp_path / "fast.onnx")
    with torch.no_grad():
        expected = model(prepare_input(x, fast=True)).numpy()
    got = export.run_onnxruntime(tmp_path / "fast.onnx", x)
    assert abs(got - expected).max() <= 1e-4


def test_check_flag_reports_difference(tmp_path, capsys):
    out = tmp_path / "small.onnx"
    argv = ["--arch", "naive-litehrnet-18", "--gene", "modules=[1]", "--input", "64x64", "--out", str(out), "--check"]
    assert export.main(argv) == 0
    text = capsys.readouterr().out
    assert str(out) in text and "image" in text and "[1, 17, 16, 16]" in text
    assert "max abs diff" in text and text.rstrip().endswith("ok")


@pytest.mark.parametrize(
    ("genes", "named"),
    [
        (["kernels=9"], "kernels"),
        (["block=shuffle"], "cross"),
        (["within_ratio=[4,4]"], "within_ratio"),
        (["no_such_gene=1"], "no_such_gene"),
    ],
)
def test_bad_genome_exits_2_naming_the_gene(tmp_path, capsys, genes, named):
    out = tmp_path / "bad.onnx"
    argv = ["--arch", "litehrnet-18", "--out", str(out)]
    for gene in genes:
        argv += ["--gene", gene]
    assert export.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"gene {named}=" in err
    assert not out.exists()


def test_bad_opset_exits_2(capsys):
    assert export.main(["--arch", "litehrnet-18", "--opset", "9"]) == 2
    assert "opset" in capsys.readouterr().err


TINY_GENES = ["--gene", "width=8", "--gene", "modules=[1,1,1]"]


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    """A checkpoint.pt of one short training of the tiny Lite-HRNet (tests/test_training.py's) on coco-mini."""
    from dataclasses import replace

    from pose.coco import parse_data
    from pose.train import load_data, train
    from tests.test_training import MINI_DATA, RECIPE, TINY

    out = tmp_path_factory.mktemp("trained")
    train(TINY, load_data(parse_data(MINI_DATA)), replace(RECIPE, epochs=1), out_dir=out, quiet=True)
    return out / "checkpoint.pt"


def test_trained_checkpoint_exports_with_its_weights(tmp_path, trained_checkpoint):
    from tests.test_training import TINY

    out = tmp_path / "trained.onnx"
    argv = ["--arch", "litehrnet-18", *TINY_GENES, "--input", "64x64", "--out", str(out)]
    assert export.main([*argv, "--checkpoint", str(trained_checkpoint)]) == 0
    trained = export.build_model(TINY, 17, (64, 64))
    trained.load_state_dict(torch.load(trained_checkpoint, weights_only=True)["model"])
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    diff, _ = export.max_abs_diff(trained.eval(), out, x)
    assert diff <= 1e-4
    untrained, _ = export.max_abs_diff(export.build_model(TINY, 17, (64, 64)), out, x)
    assert untrained > 100 * max(diff, 1e-6)  # the file holds the trained weights, not the random init


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--arch", "litehrnet-18"], "holds"),  # the checkpoint is of the tiny genome, not the preset
        (["--arch", "litehrnet-18", *TINY_GENES, "--joints", "5"], "does not fit this network"),
    ],
)
def test_checkpoint_of_another_network_is_a_clear_error(tmp_path, capsys, trained_checkpoint, argv, message):
    out = tmp_path / "x.onnx"
    assert export.main([*argv, "--input", "64x64", "--out", str(out), "--checkpoint", str(trained_checkpoint)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --checkpoint") and message in err
    assert not out.exists()


def test_missing_checkpoint_is_named(tmp_path, capsys):
    assert export.main(["--arch", "litehrnet-18", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "none.pt: no such file" in capsys.readouterr().err
