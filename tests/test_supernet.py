"""The weight-sharing supernet: the sharing rule, depth prefixes, extraction equivalence, calibration, scoring."""

import random
from pathlib import Path

import pytest
import torch

from blocks.network import PoseNet, prepare_for_training, prepare_input
from pose.coco import parse_data
from pose.train import Recipe, load_data
from search_space.genome import Genome
from search_space.presets import PRESETS, load_preset
from search_space.space import DEFAULT_SPACE, SearchSpace
from supernet.calibrate import calibrate, calibration_images
from supernet.model import SuperNet
from supernet.score import score, scoring_set
from supernet.sharing import SharingError, genome_slice, merge_shape, parameter_shapes, shared_shapes

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "data" / "coco-mini"
LITE_DITE = [p for p in PRESETS if "litehrnet" in p or "ditehrnet" in p]
# Every block kind, dynamic and split convs, two depths of stage 2 and three widths: a few dozen genomes.
TINY_SPACE = {
    "name": "tiny",
    "base": "litehrnet-18",
    "genes": {
        "width": [8, 16],
        "modules": [[1, 1, 1], [2, 1, 1]],
        "block": ["shuffle", "weighting"],
        "dsc_groups": [1, [1, 1, 2, 4]],
        "kernels": [1, [4, 4, 2, 1]],
        "within": ["sw", "gcm"],
    },
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small batches: a second thread only contends on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_space():
    return SearchSpace.from_dict(TINY_SPACE)


@pytest.fixture(scope="module")
def tiny_supernet(tiny_space):
    return SuperNet(tiny_space, seed=0)


@pytest.fixture(scope="module")
def default_union():
    return shared_shapes(SearchSpace.from_file(DEFAULT_SPACE).valid_genomes())


def meta_shapes(genome, joints=17):
    with torch.device("meta"):
        return {name: tuple(p.shape) for name, p in PoseNet(genome.resolve(joints)).named_parameters()}


# ---- the rule -----------------------------------------------------------------------------------------------
def test_slices_are_leading_except_centred_spatial_kernels():
    shared = torch.arange(4 * 3 * 5 * 5.0).reshape(4, 3, 5, 5)
    torch.testing.assert_close(genome_slice(shared, (2, 1, 3, 3)), shared[:2, :1, 1:4, 1:4])
    torch.testing.assert_close(genome_slice(shared, (4, 3, 1, 1)), shared[:, :, 2:3, 2:3])
    kernels = torch.randn(4, 6, 1, 5, 5)  # a dynamic conv: K kernels, leading slice along K too
    torch.testing.assert_close(genome_slice(kernels, (2, 3, 1, 3, 3)), kernels[:2, :3, :, 1:4, 1:4])
    bias = torch.randn(7)
    torch.testing.assert_close(genome_slice(bias, (3,)), bias[:3])
    with pytest.raises(SharingError, match="centred"):
        genome_slice(shared, (4, 3, 2, 2))
    with pytest.raises(SharingError, match="does not fit"):
        genome_slice(shared, (5, 3, 5, 5))


def test_a_name_of_two_ranks_is_an_error_naming_it():
    assert merge_shape("a.weight", (4, 2, 3, 3), (8, 1, 5, 5)) == (8, 2, 5, 5)
    with pytest.raises(SharingError, match=r"stages\.0\.0\.layers\.0\.weight has rank 4"):
        merge_shape("stages.0.0.layers.0.weight", (4, 2, 3, 3), (4,))


# ---- names and shapes predicted from parts ----------------------------------------------------------------
@pytest.mark.parametrize("preset", PRESETS)
def test_predicted_names_and_shapes_are_posenets(preset):
    genome = load_preset(preset)
    assert parameter_shapes(genome.resolve(17)) == meta_shapes(genome)


def test_union_is_the_elementwise_max_over_the_space(tiny_space):
    genomes = list(tiny_space.valid_genomes())
    assert len(genomes) > 20
    union = shared_shapes(genomes)
    per_genome = [meta_shapes(g) for g in genomes]
    assert set(union.shapes) == set().union(*per_genome)
    for name, shape in union.shapes.items():
        instances = [s[name] for s in per_genome if name in s]
        assert shape == tuple(max(dims) for dims in zip(*instances, strict=True)), name


def test_default_space_union_holds_every_preset(default_union):
    for preset in LITE_DITE:
        for name, shape in meta_shapes(load_preset(preset)).items():
            shared = default_union.shapes[name]
            assert len(shared) == len(shape) and all(s <= m for s, m in zip(shape, shared, strict=True)), name
    # a split conv's group 1 is always its 5x5 kernel, under the same name with or without other groups
    dsc = "stages.1.0.layers.0.depthwise_convs.2.conv.1.0.aggregation.weight"
    assert default_union.shapes[dsc][-2:] == (5, 5)
    assert default_union.shapes[dsc][0] == 2  # dynamic kernels of branch 2: at most 2 in the space
    assert default_union.shapes["stages.0.0.layers.0.depthwise_convs.0.conv.0.0.weight"][-2:] == (3, 3)


def test_a_shallower_stage_is_a_prefix_of_a_deeper_one():
    shallow, deep = (meta_shapes(load_preset(p)) for p in ("litehrnet-18", "litehrnet-30"))
    assert set(shallow) < set(deep)
    extra = {name.split(".layers")[0].split(".fuse")[0] for name in set(deep) - set(shallow)}
    expected = {f"stages.0.{m}" for m in (2,)} | {f"stages.1.{m}" for m in range(4, 8)} | {"stages.2.2"}
    assert extra == expected
    assert all(shallow[n] == deep[n] for n in shallow)


# ---- the supernet -------------------------------------------------------------------------------------------
def test_a_genome_uses_only_its_names_and_gradients_add_up(tiny_space, tiny_supernet):
    shallow = tiny_space.base.with_genes({"width": 8, "modules": [1, 1, 1], "block": "weighting"})
    deep = shallow.with_genes({"width": 16, "modules": [2, 1, 1]})
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for genomes in ([shallow], [deep], [shallow, deep]):
        tiny_supernet.zero_grad(set_to_none=True)
        for genome in genomes:
            tiny_supernet(genome, x).square().mean().backward()
        grads.append({k: p.grad.clone() for k, p in tiny_supernet.shared.named_parameters() if p.grad is not None})
    only_deep = {k for k in grads[1] if k.startswith("stages/0/1/")}
    assert only_deep and not only_deep & set(grads[0])  # the second module of stage 2 is the deep genome's own
    assert set(grads[2]) == set(grads[0]) | set(grads[1])
    for key, total in grads[2].items():
        expected = grads[0].get(key, 0) + grads[1].get(key, 0)
        torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-7)
    # the shallow genome's gradient lies in the leading slice of a shared conv weight, zero elsewhere
    name = "stages/0/0/layers/0/depthwise_convs/0/conv/0/0/weight"
    assert grads[0][name][4:].abs().sum() == 0 and grads[0][name][:4].abs().sum() > 0


def test_a_genome_outside_the_space_is_a_clear_error(tiny_supernet):
    genome = tiny_supernet.space.base.with_genes({"width": 12})
    with pytest.raises(ValueError, match=r"gene width=12 is not among the space's choices \['8', '16'\]"):
        tiny_supernet(genome, torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="width=12"):
        tiny_supernet.extract(genome)


def _check_extraction(supernet, genome, fast, hw=(64, 64), against_fresh=True):
    x = prepare_input(torch.randn(2, 3, *hw), fast)
    supernet.train()
    supernet(genome, x * 2 + 1)  # running statistics away from their reset values
    supernet.eval()
    expected = supernet(genome, x)
    model = supernet.extract(genome)
    if against_fresh:
        with torch.device("meta"):
            fresh = PoseNet(genome.resolve(supernet.joints)).state_dict()
        assert {n: t.shape for n, t in model.state_dict().items()} == {n: t.shape for n, t in fresh.items()}
    assert type(model) is PoseNet and model.spec == genome.resolve(supernet.joints)
    running = [b for n, b in model.named_buffers() if n.endswith("running_var")]
    assert any((b != 1).any() for b in running)
    torch.testing.assert_close(prepare_for_training(model, fast).eval()(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fast", [False, True])
def test_extracted_network_computes_the_supernets_output(tiny_space, tiny_supernet, fast):
    prepare_for_training(tiny_supernet, fast)
    for genome in random.Random(0).sample(list(tiny_space.valid_genomes()), 3):
        _check_extraction(tiny_supernet, genome, fast)


def test_extraction_on_the_default_space(default_union):
    space = SearchSpace.from_file(DEFAULT_SPACE)
    supernet = prepare_for_training(SuperNet(space, shapes=default_union), fast=True)
    genomes = [load_preset(p) for p in LITE_DITE]
    genomes += random.Random(1).sample(list(space.valid_genomes()), 20)  # the 20 random genomes
    for genome in genomes:
        _check_extraction(supernet, genome, True, hw=(64, 32), against_fresh=False)


# ---- calibration and scoring --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mini_data():
    return load_data(parse_data(f"{MINI / 'test_coco.json'}:{MINI}"))


RECIPE = Recipe(input_hw=(64, 64), threads=1)


def test_calibration_is_deterministic_and_changes_the_statistics(tiny_space, tiny_supernet, mini_data):
    genome = tiny_space.base.with_genes({"width": 8, "modules": [1, 1, 1], "block": "weighting"})
    images = calibration_images(mini_data, RECIPE, 8, seed=3)
    torch.testing.assert_close(images, calibration_images(mini_data, RECIPE, 8, seed=3), rtol=0, atol=0)
    assert not torch.equal(images, calibration_images(mini_data, RECIPE, 8, seed=4))
    stats = []
    for _ in range(2):
        model = calibrate(tiny_supernet.extract(genome), images, batch=3)
        assert not model.training
        stats.append({n: b.clone() for n, b in model.named_buffers() if "running" in n})
    assert stats[0].keys() and all(torch.equal(stats[0][n], stats[1][n]) for n in stats[0])
    assert any((b != 0).any() for n, b in stats[0].items() if n.endswith("running_mean"))
    # a subnet inside the supernet calibrates to the same statistics as its extracted network
    calibrate(tiny_supernet.network(genome), images, batch=3)
    subnet = tiny_supernet.subnet(genome).buffers()
    for name, value in stats[0].items():
        torch.testing.assert_close(subnet[name], value, rtol=1e-5, atol=1e-6)


def test_score_is_deterministic_and_counts_exactly(tiny_space, tiny_supernet, mini_data):
    from search_space.complexity import genome_complexity

    genome = tiny_space.base.with_genes({"width": 16, "modules": [2, 1, 1], "block": "weighting"})
    prepared = scoring_set(mini_data, RECIPE, 8)
    first = score(tiny_supernet, genome, mini_data, RECIPE, 8)
    second = score(tiny_supernet, genome, mini_data, RECIPE, 8, prepared=prepared)
    clocks = first.pop("seconds"), second.pop("seconds")  # the wall time of each step: measured, not deterministic
    assert first == second
    assert all(set(c) == {"extract", "calibrate", "evaluate", "other", "total"} for c in clocks)
    assert all(c["total"] == pytest.approx(sum(v for k, v in c.items() if k != "total")) for c in clocks)
    complexity = genome_complexity(genome)
    assert first["flops"] == complexity.flops["torchstat"] and first["params"] == complexity.params
    assert first["genome"] == genome.canonical_line() and 0 <= first["ap"] <= 1 and first["calibration"] == 8
    assert Genome.from_compact(first["genome"]) == genome


@pytest.mark.parametrize("preset", ["litehrnet-18", "naive-litehrnet-18", "ditehrnet-18"])
def test_folded_batch_norms_compute_the_same_function(preset):
    from blocks.fusion import fold_batch_norms

    torch.manual_seed(0)
    model = prepare_for_training(PoseNet(load_preset(preset).resolve()), fast=True)
    with torch.no_grad():
        model(prepare_input(torch.randn(4, 3, 64, 64)))  # running statistics away from (0, 1)
    model.eval()
    x = prepare_input(torch.randn(2, 3, 64, 64))
    expected = model(x)
    before = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    folded = fold_batch_norms(model)
    after = sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert after < before / 2 if preset != "ditehrnet-18" else after < before
    torch.testing.assert_close(folded(x), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(model.train())


def test_a_genome_with_other_values_of_its_inactive_genes_is_in_the_space(tiny_supernet, tmp_path):
    """`cross_ratio` and `within_ratio` change nothing on shuffle blocks: the genome is the space's, under any name
    (the supernet refused it as "not in the space"); a checkpoint written with the longer form still loads."""
    from checkpoints.load import read_weights

    base = tiny_supernet.space.base.with_genes(
        {"width": 8, "modules": [1, 1, 1], "block": "shuffle", "cross": "none", "within": "none", "dsc_groups": 1,
         "kernels": 1}
    )  # fmt: skip
    longer = base.with_genes({"cross_ratio": 16, "within_ratio": [4, 4, 8, 8]})
    assert longer.compact() != base.compact() and longer.same_network(base)
    tiny_supernet.check(longer)
    model = tiny_supernet.extract(longer)
    path = tmp_path / "old.pt"
    torch.save({"model": model.state_dict(), "meta": {"genome": longer.compact()}}, path)
    loaded = read_weights(path, Genome.from_compact(base.canonical_line())).renamed.state
    assert loaded.keys() == model.state_dict().keys()
