"""Supernet subnets prefetched: the next step's skeletons built in a background thread while a step computes, the
same subnets `SuperNet.subnet` would build, with no device setting leaking into the training thread."""

import threading
from dataclasses import replace

import torch

import supernet.model as model
from blocks.network import prepare_for_training, prepare_input
from supernet.model import SuperNet
from supernet.sampling import candidates
from supernet.training import next_step, train_supernet
from tests.test_supernet import one_thread, tiny_space
from tests.test_supernet_training import OPTIONS, RECIPE, mini_data, tiny

assert one_thread and tiny_space and mini_data and tiny  # the fixtures, imported for these tests


def building_threads(monkeypatch) -> list[tuple[str, str]]:
    """(thread name, genome) of every skeleton built from now on."""
    built, original = [], model._build_subnet

    def spy(genome, *args):
        built.append((threading.current_thread().name, genome.compact()))
        return original(genome, *args)

    monkeypatch.setattr(model, "_build_subnet", spy)
    return built


def test_a_prefetched_subnet_is_built_in_the_background_and_computes_the_same(tiny_space, monkeypatch):
    genomes = list(tiny_space.valid_genomes())[:3]
    inline = prepare_for_training(SuperNet(tiny_space, seed=0)).train()
    ahead = prepare_for_training(SuperNet(tiny_space, seed=0)).train()
    built = building_threads(monkeypatch)
    ahead.prefetch(genomes)
    ahead.prefetch(genomes)  # asked again while on their way: not built twice
    x = prepare_input(torch.randn(2, 3, 64, 64))
    for genome in genomes:
        torch.testing.assert_close(ahead(genome, x), inline(genome, x), rtol=0, atol=0)
        assert ahead.subnet(genome).takes == inline.subnet(genome).takes
    by_thread = sorted(name.startswith("subnet-prefetch") for name, _ in built)
    assert by_thread == [False] * len(genomes) + [True] * len(genomes), built  # the inline supernet's, the prefetched


def test_building_on_meta_in_a_thread_leaves_this_threads_tensors_alone():
    inside, leave = threading.Event(), threading.Event()

    def build():
        with model._OnMeta():
            assert torch.empty(1).device.type == "meta"
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=build)
    thread.start()
    assert inside.wait(10)
    try:
        assert torch.empty(1).device.type == "cpu" and torch.get_default_device().type == "cpu"
    finally:
        leave.set()
        thread.join()


def test_next_step_runs_through_epochs_and_ends():
    assert next_step(0, 0, 3, 2) == (0, 1)
    assert next_step(0, 2, 3, 2) == (1, 0)
    assert next_step(1, 2, 3, 2) is None


def test_supernet_training_builds_only_the_first_steps_genomes_when_they_run(tiny, mini_data, monkeypatch):
    built = building_threads(monkeypatch)
    recipe = replace(RECIPE, epochs=2, max_steps=2)
    options = replace(OPTIONS, sandwich=2)
    train_supernet(tiny, mini_data, recipe, options, quiet=True, track=False)
    pool = candidates(tiny.space)
    first = {g.compact() for g in pool.sandwich(2, recipe.seed, 0, 0)}
    later = {g.compact() for e in range(2) for s in range(2) if (e, s) != (0, 0) for g in pool.sandwich(2, 0, e, s)[2:]}
    inline = {genome for name, genome in built if not name.startswith("subnet-prefetch")}
    ahead = {genome for name, genome in built if name.startswith("subnet-prefetch")}
    assert inline <= first, inline - first  # every later random genome was ready when its step came
    assert later - first <= ahead
