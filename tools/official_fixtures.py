"""Write the official models' key/shape lists as test fixtures, from the authors' code, outside the project.

Run it in a scratch environment that has torch and mmcv 1.3.x (`MMCV_WITH_OPS=0 pip install --no-build-isolation
mmcv==1.3.18`, with an empty `torchvision` package if none is installed: mmcv.runner imports it for model-zoo URLs
only), given checkouts of the official repositories; nothing of theirs is copied into hrnas. The few mmpose 0.x
pieces the model files import (BasicBlock and Bottleneck, channel_shuffle, load_checkpoint) are imported from the
given mmpose checkout; its registry and logger are replaced by small stand-ins.

python tools/official_fixtures.py --lite-hrnet PATH/Lite-HRNet --mmpose PATH/mmpose-v0.29.0 --out tests/data/official

For each preset it writes `<preset>.keys.json`: the official state dict's keys and shapes, the backbone's keys
prefixed `backbone.` and the TopDownSimpleHead's final 1x1 conv as `keypoint_head.final_layer.*`, in the order of
the file that mmpose 0.x saves (the Lite-HRNet repository's layout).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

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


def official_keys(backbone, joints: int, head_channels: int) -> list[list]:
    keys = [[f"backbone.{k}", list(v.shape)] for k, v in backbone.state_dict().items()]
    return keys + [["keypoint_head.final_layer.weight", [joints, head_channels, 1, 1]],
                   ["keypoint_head.final_layer.bias", [joints]]]  # fmt: skip


def lite_hrnet_fixtures(repo: Path, out: Path) -> None:
    from mmcv import Config

    lite = load_module("official_litehrnet", repo / "models" / "backbones" / "litehrnet.py")
    for preset, config in LITE_HRNET_CONFIGS.items():
        cfg = Config.fromfile(str(repo / config))
        backbone_cfg = dict(cfg.model.backbone)
        backbone_cfg.pop("type")
        backbone = lite.LiteHRNet(**backbone_cfg)
        head = cfg.model.keypoint_head
        # The head reads the backbone's branch-0 output. The Naive Lite-HRNet-18 config says in_channels=40 where
        # that branch has 30 channels (a model built from it fails on its first input); the head takes 30.
        channels = backbone_cfg["extra"]["stages_spec"]["num_channels"][-1][0]
        notes = (
            []
            if head.in_channels == channels
            else [f"the config's keypoint_head.in_channels is {head.in_channels}; the backbone's output has {channels}"]
        )
        keys = official_keys(backbone, head.out_channels, channels)
        fixture = {"preset": preset, "source": f"HRNet/Lite-HRNet {config}", "notes": notes, "keys": keys}
        (out / f"{preset}.keys.json").write_text(json.dumps(fixture, indent=0))
        print(f"{preset}: {len(keys)} tensors{''.join(f'; {n}' for n in notes)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lite-hrnet", type=Path, required=True, help="a checkout of HRNet/Lite-HRNet")
    parser.add_argument("--mmpose", type=Path, required=True, help="a checkout of open-mmlab/mmpose at v0.29.0")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    stand_in_mmpose(args.mmpose.resolve())
    lite_hrnet_fixtures(args.lite_hrnet.resolve(), args.out)


if __name__ == "__main__":
    main()
