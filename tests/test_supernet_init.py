"""Supernet warm starts: the shared weights set from one member's network (the largest, or any member's slices), so
that extracting that member gives the loaded network; `supernet train --init-from` from a published-layout file."""

from __future__ import annotations

import pytest
import torch
import yaml

from blocks.network import PoseNet
from checkpoints.formats import to_official
from checkpoints.seeded import seeded_input, seeded_state
from hrnas.commands import supernet as supernet_command
from search_space.genome import Genome
from supernet.model import SuperNet
from supernet.sampling import candidates
from supernet.sharing import SharingError
from supernet.training import CHECKPOINT, SpaceSource, restore
from tests.test_published_checkpoints import one_error_line
from tests.test_supernet_training import CLI, TINY_SPACE

# a member that the official LiteHRNet can build (so it has a published layout), not the largest
LITE_MEMBER = {"width": 16, "modules": [2, 1, 1], "block": "weighting", "dsc_groups": 1, "kernels": 1}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> SpaceSource:
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    return SpaceSource.from_file(path)


def seeded_network(genome: Genome) -> tuple[PoseNet, dict[str, torch.Tensor]]:
    model = PoseNet(genome.resolve())
    state = {k: v.to(model.state_dict()[k].dtype) for k, v in seeded_state(
        {k: tuple(v.shape) for k, v in model.state_dict().items()}).items()}  # fmt: skip
    model.load_state_dict(state)
    return model.eval(), state


def output(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(seeded_input().float())


def test_extracting_a_loaded_member_gives_the_loaded_network(tiny):
    supernet = SuperNet(tiny.space)
    largest = candidates(tiny.space).largest
    member = tiny.space.base.with_genes(LITE_MEMBER)
    for genome in (largest, member):  # the largest sets every shared tensor it covers; a member, its slices
        network, state = seeded_network(genome)
        assert supernet.load_member(genome, state) == len(list(network.parameters()))
        assert torch.equal(output(supernet.extract(genome)), output(network))
    # the member's values sit inside the largest's shared tensors: the largest now reads them in its slices
    name = "stages.0.0.fuse.layers.0.1.0.weight"
    assert torch.equal(supernet.extract(largest).state_dict()[name][:16, :32], state[name])
    with pytest.raises(SharingError, match="missing"):
        supernet.load_member(largest, state)  # the member's weights are not the largest's


def test_supernet_train_init_from_a_published_layout(tiny, tmp_path, capsys):
    member = tiny.space.base.with_genes(LITE_MEMBER)
    (tmp_path / "member.yaml").write_text(member.to_yaml())
    (tmp_path / "tiny.yaml").write_text(tiny.text)
    network, state = seeded_network(member)
    published = tmp_path / "member_mmpose.pth"
    torch.save({"state_dict": to_official(state, "mmpose0x", "lite")}, published)
    out = tmp_path / "sn"
    train = ["train", "--space", str(tmp_path / "tiny.yaml"), *CLI, "--epochs", "1", "--sandwich", "0", "--lr", "0"]
    train += ["--calibration", "4", "--out", str(out), "--storage", str(tmp_path / "store")]
    init = ["--init-from", str(published), "--init-arch", str(tmp_path / "member.yaml")]
    assert supernet_command.main([*train, *init]) == 0, capsys.readouterr().err
    assert "shared weights: " in capsys.readouterr().err
    supernet, *_ = restore(out / CHECKPOINT)
    extracted = supernet.extract(member).state_dict()
    parameters = dict(network.named_parameters())
    assert all(torch.equal(extracted[name], value) for name, value in parameters.items())  # --lr 0: as loaded

    # the largest's checkpoint is the default member: the member's file does not fit it, one line
    assert supernet_command.main([*train[:-4], "--out", str(tmp_path / "sn2"), "--init-from", str(published)]) == 2
    assert "does not fit this network" in (line := one_error_line(capsys)) and "with --init-arch" in line
    assert supernet_command.main([*train, "--init-arch", "litehrnet-18"]) == 2
    assert "--init-arch names the member that --init-from holds" in one_error_line(capsys)
