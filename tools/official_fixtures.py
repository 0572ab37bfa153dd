"""Write the official models' key/shape lists and outputs as test fixtures, from the authors' code, outside the project.

Run it in a scratch environment that has torch, numpy, yacs and mmcv 1.3.x (`MMCV_WITH_OPS=0 pip install
--no-build-isolation mmcv==1.3.18`, with an empty `torchvision` package if none is installed: mmcv.runner imports it
for model-zoo URLs only), given checkouts of the official repositories; nothing of theirs is copied into hrnas. The
few mmpose 0.x pieces the model files import (BasicBlock and Bottleneck, channel_shuffle, load_checkpoint) are
imported from the given mmpose checkout; its registry and logger are replaced by small stand-ins.

python tools/convert_cases.py --out /tmp/converted    # the project environment: `hrnas convert` files to check
python tools/official_fixtures.py --lite-hrnet PATH/Lite-HRNet --dite-hrnet PATH/Dite-HRNet \
    --mmpose PATH/mmpose-v0.29.0 --hrnet PATH/deep-high-resolution-net.pytorch --converted /tmp/converted \
    --out tests/data/official

For each preset it writes `<preset>.keys.json`: the official state dict's keys and shapes in the order of the file
that mmpose 0.x saves (the backbone's keys prefixed `backbone.`, the TopdownHeatmapSimpleHead's final 1x1 conv as
`keypoint_head.final_layer.*`), and `<preset>.output.npy`: the official model's float64 output on
`checkpoints.seeded.seeded_input()` with every tensor set by `checkpoints.seeded.seeded_tensor(official key)`, in
eval mode. The head of every preset is one 1x1 conv on the backbone's branch-0 output (`num_deconv_layers=0`,
`final_conv_kernel=1` in every config used), applied here as that conv. For HRNet-W32 it also writes
`hrnet-w32.original.keys.json` and `hrnet-w32.original.output.npy` from the original HRNet repository's
PoseHighResolutionNet (its own forward, its own key names).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

LITE_HRNET_CONFIGS = {
    "naive-litehrnet-18": "configs/top_down/naive_litehrnet/coco/naive_litehrnet_18_coco_256x192.py",
    "wider-naive-litehrnet-18": "configs/top_down/naive_litehrnet/coco/wider_naive_litehrnet_18_coco_256x192.py",
    "litehrnet-18": "configs/top_down/lite_hrnet/coco/litehrnet_18_coco_256x192.py",
    "litehrnet-30": "configs/top_down/lite_hrnet/coco/litehrnet_30_coco_256x192.py",
}


def stand_in_mmpose(mmpose: Path) -> None:
    """`mmpose` as the model files import it: the checkout's backbones package, a registry and a logger."""
    import logging

    class Registry:
        def register_module(self, *args, **kwargs):
            return lambda cls: cls

    root = types.ModuleType("mmpose")
    root.__path__ = [str(mmpose / "mmpose")]
    utils = types.ModuleType("mmpose.utils")
    utils.get_root_logger = lambda *args, **kwargs: logging.getLogger("mmpose")
    models = types.ModuleType("mmpose.models")
    models.__path__ = [str(mmpose / "mmpose" / "models")]
    registry = types.ModuleType("mmpose.models.registry")
    registry.BACKBONES = Registry()
    backbones = types.ModuleType("mmpose.models.backbones")
    backbones.__path__ = [str(mmpose / "mmpose" / "models" / "backbones")]
    sys.modules.update({
        "mmpose": root, "mmpose.utils": utils, "mmpose.models": models, "mmpose.models.registry": registry,
        "mmpose.models.builder": registry, "mmpose.models.backbones": backbones,
    })  # fmt: skip


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DITE_HRNET_CONFIGS = {
    "ditehrnet-18": "configs/top_down/dite_hrnet/coco/ditehrnet_18_coco_256x192.py",
    "ditehrnet-30": "configs/top_down/dite_hrnet/coco/ditehrnet_30_coco_256x192.py",
}
REPOSITORIES = {"LiteHRNet": "HRNet/Lite-HRNet", "DiteHRNet": "ZiyiZhang27/Dite-HRNet"}  # where each class is from
MMPOSE_HRNET_CONFIG = "configs/body/2d_kpt_sview_rgb_img/topdown_heatmap/coco/hrnet_w32_coco_256x192.py"
ORIGINAL_HRNET_CONFIG = "experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml"


class TopDown(torch.nn.Module):
    """An mmpose 0.x top-down model as its checkpoint names it: `backbone` and `keypoint_head.final_layer`, the
    TopdownHeatmapSimpleHead of every config used here (no deconvolutions, a 1x1 final conv on branch 0)."""

    def __init__(self, backbone: torch.nn.Module, channels: int, joints: int):
        super().__init__()
        self.backbone = backbone
        self.keypoint_head = torch.nn.Module()
        self.keypoint_head.final_layer = torch.nn.Conv2d(channels, joints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.keypoint_head.final_layer(self.backbone(x)[0])


def one_key_per_line(fixture: dict) -> str:
    """The fixture as JSON with one official key (and its shape) per line."""
    head = json.dumps({k: v for k, v in fixture.items() if k != "keys"})[:-1]
    keys = ",\n".join(json.dumps(entry) for entry in fixture["keys"])
    return f'{head}, "keys": [\n{keys}\n]}}\n'


def write_fixture(name: str, model: torch.nn.Module, source: str, notes: list[str], out: Path) -> None:
    """`<name>.keys.json` and `<name>.output.npy`: the model's keys and its float64 output with seeded weights."""
    from checkpoints.seeded import seeded_input, seeded_state

    state = model.state_dict()
    keys = [[key, list(value.shape)] for key, value in state.items()]
    model.double().load_state_dict(seeded_state({key: tuple(shape) for key, shape in keys}), strict=True)
    with torch.no_grad():
        output = model.eval()(seeded_input())
    fixture = {"preset": name.split(".")[0], "source": source, "notes": notes, "keys": keys}
    (out / f"{name}.keys.json").write_text(one_key_per_line(fixture))
    np.save(out / f"{name}.output.npy", output.numpy())
    scale = output.abs().max().item()
    notes_text = "".join(f"; {n}" for n in notes)
    print(f"{name}: {len(keys)} tensors, output {tuple(output.shape)} up to {scale:.3g}{notes_text}")


def backbone_from_config(module, cls: str, repo: Path, config: str):
    from mmcv import Config

    cfg = Config.fromfile(str(repo / config))
    backbone_cfg = dict(cfg.model.backbone)
    backbone_cfg.pop("type")
    backbone_cfg.pop("pretrained", None)
    return getattr(module, cls)(**backbone_cfg), backbone_cfg, cfg.model.keypoint_head


def lite_family_fixtures(file: Path, cls: str, configs: dict[str, str], repo: Path, out: Path) -> type:
    """The Lite-HRNet or Dite-HRNet repository's presets (their backbones hold the iterative head); returns the
    backbone class."""
    module = load_module(f"official_{cls.lower()}", file)
    for preset, config in configs.items():
        backbone, backbone_cfg, head = backbone_from_config(module, cls, repo, config)
        # The head reads the backbone's branch-0 output. The Naive Lite-HRNet-18 config says in_channels=40 where
        # that branch has 30 channels (a model built from it fails on its first input); the head takes 30.
        channels = backbone_cfg["extra"]["stages_spec"]["num_channels"][-1][0]
        notes = (
            []
            if head.in_channels == channels
            else [f"the config's keypoint_head.in_channels is {head.in_channels}; the backbone's output has {channels}"]
        )
        source = f"{REPOSITORIES[cls]} {config}"
        write_fixture(preset, TopDown(backbone, channels, head.out_channels), source, notes, out)
    return getattr(module, cls)


def hrnet_fixtures(mmpose: Path, original: Path, out: Path) -> type:
    """HRNet-W32 as mmpose 0.x builds it and as the original HRNet repository does (no `backbone.` prefix); returns
    mmpose's HRNet class."""
    module = load_module("mmpose.models.backbones.hrnet", mmpose / "mmpose" / "models" / "backbones" / "hrnet.py")
    backbone, _, head = backbone_from_config(module, "HRNet", mmpose, MMPOSE_HRNET_CONFIG)
    model = TopDown(backbone, head.in_channels, head.out_channels)
    write_fixture("hrnet-w32", model, f"open-mmlab/mmpose v0.29.0 {MMPOSE_HRNET_CONFIG}", [], out)

    sys.path.insert(0, str(original / "lib"))
    from config import cfg  # the original repository's yacs defaults

    cfg.defrost()
    cfg.merge_from_file(str(original / ORIGINAL_HRNET_CONFIG))
    pose_hrnet = load_module("official_pose_hrnet", original / "lib" / "models" / "pose_hrnet.py")
    source = f"leoxiaobin/deep-high-resolution-net.pytorch {ORIGINAL_HRNET_CONFIG}"
    write_fixture("hrnet-w32.original", pose_hrnet.PoseHighResolutionNet(cfg), source, [], out)
    return module.HRNet


def converted_fixtures(folder: Path, code: dict[str, object], out: Path) -> None:
    """Each `hrnas convert` file of tools/convert_cases.py, loaded with strict=True into the model its config builds
    with the official code: `converted/<case>.output.npy` (the official output), beside its config and genome."""
    import shutil

    from mmcv import Config

    from checkpoints.seeded import seeded_input

    target = out / "converted"
    target.mkdir(exist_ok=True)
    for config_path in sorted(folder.glob("*.pth.config.py")):
        case = config_path.name.removesuffix(".pth.config.py")
        model_cfg = Config.fromfile(str(config_path)).model
        backbone_cfg = dict(model_cfg.backbone)
        backbone = code[backbone_cfg.pop("type")](**backbone_cfg)
        head = model_cfg.keypoint_head
        model = TopDown(backbone, head.in_channels, head.out_channels)
        state = torch.load(folder / f"{case}.pth", map_location="cpu", weights_only=True)["state_dict"]
        model.double().load_state_dict(state, strict=True)
        with torch.no_grad():
            output = model.eval()(seeded_input())
        np.save(target / f"{case}.output.npy", output.numpy())
        shutil.copy(config_path, target / f"{case}.config.py")
        shutil.copy(folder / f"{case}.genome", target / f"{case}.genome")
        print(f"converted {case}: {len(state)} tensors loaded strictly, output up to {output.abs().max().item():.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lite-hrnet", type=Path, required=True, help="a checkout of HRNet/Lite-HRNet")
    parser.add_argument("--dite-hrnet", type=Path, required=True, help="a checkout of ZiyiZhang27/Dite-HRNet")
    parser.add_argument("--mmpose", type=Path, required=True, help="a checkout of open-mmlab/mmpose at v0.29.0")
    parser.add_argument("--hrnet", type=Path, required=True, help="a checkout of deep-high-resolution-net.pytorch")
    parser.add_argument("--converted", type=Path, help="the folder of tools/convert_cases.py's files, to check")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for checkpoints.seeded (torch only)
    stand_in_mmpose(args.mmpose.resolve())
    lite = args.lite_hrnet.resolve()
    lite_cls = lite_family_fixtures(
        lite / "models/backbones/litehrnet.py", "LiteHRNet", LITE_HRNET_CONFIGS, lite, args.out
    )
    dite = args.dite_hrnet.resolve()
    dite_cls = lite_family_fixtures(
        dite / "models/backbones/ditehrnet.py", "DiteHRNet", DITE_HRNET_CONFIGS, dite, args.out
    )
    hrnet = hrnet_fixtures(args.mmpose.resolve(), args.hrnet.resolve(), args.out)
    if args.converted:
        classes = {"LiteHRNet": lite_cls, "DiteHRNet": dite_cls, "HRNet": hrnet}
        converted_fixtures(args.converted.resolve(), classes, args.out)


if __name__ == "__main__":
    main()
