"""Data pipeline images/s against model-step images/s: the pipeline must never be what a trial waits on.

For each input size, in one process and on the same data:
- `decode+crop (cold)`: the first pass over the training persons, JPEG decoding included;
- `crop (warm)`: later passes, images served from the decoded-image cache (what every epoch after the first sees);
  both with the full training augmentation and the heatmap targets, batched by the same DataLoader as training;
- `model step`: forward + backward + Adam of the architecture on batches of that size (the fast training layout).
The training loop loads batches in the main process, so a step costs data time + model time; the last column is
the share of a step spent on data.

python bench/data_pipeline.py                                     # litehrnet-18, 128x96 and 256x192, synthetic
python bench/data_pipeline.py --arch ditehrnet-18 --input 128x96 --batches 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from blocks.network import keep_freed_memory, prepare_input
from pose.coco import parse_data
from pose.dataset import ImageCache, TopDownDataset
from pose.losses import weighted_mse
from pose.train import Recipe, build_model, load_data
from search_space.complexity import parse_input_size
from search_space.presets import load_architecture


def images_per_second(loader, limit: int) -> float:
    start, seen = time.perf_counter(), 0
    for k, (images, *_rest) in enumerate(loader):
        seen += len(images)
        if k + 1 >= limit:
            break
    return seen / (time.perf_counter() - start)


def model_step_rate(arch: str, input_hw, batch: int, steps: int, joints: int) -> float:
    model = build_model(load_architecture(arch), Recipe(input_hw=input_hw), joints)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    images = torch.randn(batch, 3, *input_hw)
    targets = torch.rand(batch, joints, input_hw[0] // 4, input_hw[1] // 4)
    weights = torch.ones(batch, joints)
    times = []
    for k in range(steps + 2):
        start = time.perf_counter()
        loss = weighted_mse(model(prepare_input(images)), targets, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if k >= 2:  # two warm-up steps
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="litehrnet-18")
    p.add_argument("--data", default="synthetic", help="synthetic | COCO_ROOT | ANN.json:IMAGE_DIR")
    p.add_argument("--input", action="append", default=[], help="HxW (repeatable; default 128x96 and 256x192)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=30, help="batches timed per data measurement (default 30)")
    p.add_argument("--steps", type=int, default=5, help="timed model steps (default 5)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    data = load_data(parse_data(args.data))
    joints = len(data.train[0].keypoints)
    rows = []
    for text in args.input or ["128x96", "256x192"]:
        input_hw = parse_input_size(text)
        dataset = TopDownDataset(data.train, input_hw, True, Recipe().augment, 0, ImageCache())
        loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=False)
        cold = images_per_second(loader, args.batches)
        dataset.epoch = 1
        warm = images_per_second(loader, args.batches)
        model = model_step_rate(args.arch, input_hw, args.batch, args.steps, joints)
        rows.append(
            {
                "arch": args.arch,
                "input": text,
                "batch": args.batch,
                "data_cold_img_s": round(cold, 1),
                "data_warm_img_s": round(warm, 1),
                "model_step_img_s": round(model, 1),
                "data_share_warm": round(model / (model + warm), 3),
            }
        )
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"data: {data.description}; {args.arch}, batch {args.batch}, {args.threads} threads")
    print(
        f"{'input':<8} {'decode+crop (cold)':>19} {'crop (warm)':>12} {'model step':>11} {'data share of a step':>21}"
    )
    for r in rows:
        print(
            f"{r['input']:<8} {r['data_cold_img_s']:>15.0f} i/s {r['data_warm_img_s']:>8.0f} i/s "
            f"{r['model_step_img_s']:>7.1f} i/s {100 * r['data_share_warm']:>20.1f}%"
        )


if __name__ == "__main__":
    main()
