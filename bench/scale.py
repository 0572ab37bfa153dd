"""A trial on COCO-sized data: start-up time, peak memory of the whole trial and data against model images/s.

Builds (once, in the cache folder) a COCO-format set the size of COCO's person keypoints: 150,000 training and 6,000
validation persons, from one of two sources (`--source`):
- `photos` (default): the real COCO photos and persons of a small COCO folder (`tests/data/coco-mini`, a copy of
  `../shared/data/coco-mini`: 4 photos, 11 persons with keypoints), each photo repeated under as many distinct file
  names (hard links) as it takes, its persons with it. Every image entry is a distinct file, as in COCO, so
  decoded-image caches fill as they would;
- `drawn`: ~118,000 + ~4,700 image entries that all name 6 drawn 640x480 JPEGs (a cache holds all 6).
Then, for each worker count, runs as a subprocess

    hrnas train --data TRAIN.json:IMAGES --val VAL.json:IMAGES --input 256x192 --epochs 1 --max-steps N --workers W

and measures: start-up (process start to the end of the first training step, marked on stderr), peak memory of
the whole trial (the sum of PSS over the process and its children, from /proc every 0.5 s: shared pages are not
counted twice), and the trial's training images/s. In this process it also times the annotation index (built on
a fresh cache, then reused as every trial reuses it), the data loader alone (batches without the model) with W
workers, and the model step (forward + backward + Adam on a ready batch).

python bench/scale.py                                  # COCO-sized, 200 steps, 0, 1 and 2 workers (~30 min)
python bench/scale.py --workers 2 --steps 30 --batch 16  # issue 24's memory check (~15 min)
python bench/scale.py --persons 300 --steps 2 --input 64x64 --batch 4 --workers 0,1   # smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from bench.data_pipeline import model_step_rate
from pose.annotation_index import build_index, indexed_people
from pose.dataset import SHORT_AUGMENT, ImageCache, TopDownDataset
from pose.device import CPU
from pose.geometry import COCO_KEYPOINTS
from pose.loading import DEFAULT_LOADING, EpochSampler, make_loader
from pose.synthetic import SKELETON, default_cache_dir
from pose.train import Progress
from search_space.complexity import parse_input_size

ROOT = Path(__file__).resolve().parents[1]
VERSION = 1  # bump when the generated set changes
FILES = 6  # distinct drawn JPEGs behind all image entries (source `drawn`)
PHOTOS = ROOT / "tests" / "data" / "coco-mini"  # the default folder of source `photos`
IMAGE_WH = (640, 480)
IMAGES_PER_PERSON = 118_287 / 149_813  # COCO train2017: image entries per person annotation
VAL_SHARE = 25  # one validation person per 25 training persons (6,000 for 150,000)
TARGETS = {"startup_s": 30.0, "peak_gib": 3.0}
GIB = 2**30


# ---- the data set ----------------------------------------------------------------------------------------------
def _jpegs(folder: Path, rng: np.random.Generator) -> list[str]:
    """A few textured 640x480 photos-to-be: gradients, blurred shapes, noise (JPEG-compressed like real ones)."""
    names = []
    for k in range(FILES):
        y, x = np.mgrid[0 : IMAGE_WH[1], 0 : IMAGE_WH[0]]
        base = np.stack([(x * rng.uniform(0.1, 0.4) + y * rng.uniform(0.1, 0.4) + 60 * c) % 256 for c in range(3)], -1)
        image = Image.fromarray(base.astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(40):
            x0, y0 = rng.uniform(0, IMAGE_WH[0]), rng.uniform(0, IMAGE_WH[1])
            box = (x0, y0, x0 + rng.uniform(10, 200), y0 + rng.uniform(10, 200))
            draw.ellipse(box, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        noise = rng.integers(-12, 13, (IMAGE_WH[1], IMAGE_WH[0], 3))
        pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(1.5)), np.int16) + noise
        names.append(f"photo{k}.jpg")
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / names[-1], quality=90)
    return names


def _split(persons: int, files: list[str], rng: np.random.Generator, first_id: int) -> dict:
    """A COCO person-keypoints file: `persons` people over ~0.79 image entries each, all naming the few files."""
    images = max(1, round(persons * IMAGES_PER_PERSON))
    w = rng.uniform(30, 330, persons)
    h = np.minimum(w * rng.uniform(1.3, 2.8, persons), IMAGE_WH[1] - 2)
    x, y = rng.uniform(0, IMAGE_WH[0] - w), rng.uniform(0, IMAGE_WH[1] - h)
    # a standing figure: head on top, feet at the bottom, shoulders/hips/knees in between, with jitter
    rows = np.array(
        [0.05, 0.03, 0.03, 0.05, 0.05, 0.2, 0.2, 0.35, 0.35, 0.48, 0.48, 0.52, 0.52, 0.73, 0.73, 0.95, 0.95]
    )
    cols = np.array([0.5, 0.45, 0.55, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8, 0.15, 0.85, 0.38, 0.62, 0.38, 0.62, 0.38, 0.62])
    kx = x[:, None] + w[:, None] * np.clip(cols + rng.normal(0, 0.05, (persons, 17)), 0, 1)
    ky = y[:, None] + h[:, None] * np.clip(rows + rng.normal(0, 0.03, (persons, 17)), 0, 1)
    visibility = rng.choice([0, 1, 2], (persons, 17), p=[0.25, 0.1, 0.65])
    keypoints = np.stack([kx, ky, visibility], -1).round(1) * (visibility[..., None] > 0)
    image_of = np.arange(persons) % images
    annotations = [
        {
            "id": first_id + i,
            "image_id": first_id + int(image_of[i]),
            "category_id": 1,
            "iscrowd": 0,
            "bbox": [round(float(v), 1) for v in (x[i], y[i], w[i], h[i])],
            "area": round(float(w[i] * h[i] * 0.6), 1),
            "num_keypoints": int((visibility[i] > 0).sum()),
            "keypoints": keypoints[i].ravel().tolist(),
        }
        for i in range(persons)
    ]
    entries = [
        {"id": first_id + k, "file_name": files[k % len(files)], "width": IMAGE_WH[0], "height": IMAGE_WH[1]}
        for k in range(images)
    ]
    category = {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO_KEYPOINTS)}
    return {"images": entries, "annotations": annotations, "categories": [{**category, "skeleton": SKELETON}]}


def _drawn(work: Path, persons: int, seed: int) -> None:
    """Source `drawn`: a few drawn JPEGs named by every image entry, persons placed at random."""
    rng = np.random.default_rng(seed)
    files = _jpegs(work / "images", rng)
    for name, count, first_id in (("train", persons, 1), ("val", _validation(persons), 10**7)):
        split = _split(count, files, rng, first_id)
        (work / "annotations" / f"person_keypoints_{name}.json").write_text(json.dumps(split))


def _repeat_photos(source: dict, photos: Path, images: Path, persons: int, prefix: str, first_id: int) -> dict:
    """A COCO person-keypoints file of `persons` persons: the source's photos (those with a person with keypoints)
    repeated in turn, each repetition a new image entry and file (a hard link, or a copy where links fail) with
    all its persons, the last one cut to the count."""
    people: dict[int, list[dict]] = {}
    for ann in source["annotations"]:
        if ann.get("num_keypoints", 0) > 0 and not ann.get("iscrowd", 0):
            people.setdefault(ann["image_id"], []).append(ann)
    entries = [image for image in source["images"] if image["id"] in people]
    split: dict = {"images": [], "annotations": [], "categories": source["categories"]}
    while len(split["annotations"]) < persons:
        image = entries[len(split["images"]) % len(entries)]
        image_id = first_id + len(split["images"])
        name = f"{prefix}{len(split['images']):07d}-{image['file_name']}"
        try:
            os.link(photos / image["file_name"], images / name)
        except OSError:
            shutil.copyfile(photos / image["file_name"], images / name)
        split["images"].append({**image, "id": image_id, "file_name": name})
        for ann in people[image["id"]][: persons - len(split["annotations"])]:
            split["annotations"].append({**ann, "id": first_id + len(split["annotations"]), "image_id": image_id})
    return split


def _photos(work: Path, persons: int, seed: int, photos: Path = PHOTOS) -> None:
    """Source `photos`: real COCO photos and their persons, repeated (see `_repeat_photos`)."""
    files = [json.loads(f.read_text()) for f in sorted(photos.glob("*.json"))] if photos.is_dir() else []
    source = next((f for f in files if isinstance(f, dict) and "annotations" in f), None)  # not a detections list
    if source is None:
        raise SystemExit(f"no COCO person-keypoints file in {photos}: use --source drawn")
    for name, count, prefix, first_id in (("train", persons, "t", 1), ("val", _validation(persons), "v", 10**7)):
        split = _repeat_photos(source, photos, work / "images", count, prefix, first_id)
        (work / "annotations" / f"person_keypoints_{name}.json").write_text(json.dumps(split))


SOURCES = {"photos": _photos, "drawn": _drawn}


def _validation(persons: int) -> int:
    return max(10, persons // VAL_SHARE)


def coco_sized(folder: Path, persons: int, seed: int = 0, source: str = "drawn") -> Path:
    """The set's folder (annotations/, images/) from `source` (see SOURCES), generated into a temporary folder and
    renamed into place once."""
    tag = "" if source == "drawn" else f"-{source}"  # the drawn set keeps its earlier folder name
    root = folder / f"scale-v{VERSION}-{persons}-{seed}{tag}"
    if (root / "DONE").is_file():
        return root
    folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=folder, prefix=root.name + "."))
    try:
        (work / "images").mkdir()
        (work / "annotations").mkdir()
        SOURCES[source](work, persons, seed)
        (work / "DONE").write_text("")
        try:
            work.rename(root)
        except OSError:  # another process finished first: keep its set
            if not (root / "DONE").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return root


# ---- measuring a trial -----------------------------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def pss(pid: int) -> int:
    """Bytes of PSS of one process (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_pss(pid: int) -> int:
    """Bytes of PSS of a process and all its descendants (0 for processes gone meanwhile)."""
    tree, total, todo = _children(), 0, [pid]
    while todo:
        current = todo.pop()
        todo += tree.get(current, [])
        total += pss(current)
    return total


def run_trial(command: list[str], env: dict[str, str]) -> dict:
    """Run one training subprocess; its start-up, peak tree PSS and JSON summary."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marks: dict[str, float] = {}
    err_lines: list[str] = []

    def read_stderr() -> None:
        for line in process.stderr:
            err_lines.append(line)
            if line.startswith("data:"):
                marks.setdefault("data_s", time.perf_counter() - start)
            if Progress.FIRST_STEP in line:
                marks.setdefault("startup_s", time.perf_counter() - start)
                print(f"    first step after {marks['startup_s']:.1f} s", file=sys.stderr, flush=True)
            if line.lstrip().startswith("epoch") or "epoch 1/" in line:
                print(f"    {line.strip()}", file=sys.stderr, flush=True)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    peak = peak_main = 0
    while process.poll() is None:
        peak, peak_main = max(peak, tree_pss(process.pid)), max(peak_main, pss(process.pid))
        time.sleep(0.5)  # reading smaps_rollup of GiB-sized processes costs CPU
    out = process.stdout.read()
    reader.join(timeout=5)
    if process.returncode != 0:
        raise RuntimeError(f"trial failed ({process.returncode}): {''.join(err_lines)[-3000:]}")
    summary = json.loads(out.strip().splitlines()[-1])
    wall = time.perf_counter() - start
    return {**marks, "peak_bytes": peak, "peak_main_bytes": peak_main, "wall_s": wall, "summary": summary}


def loader_rate(people, input_hw, batch: int, workers: int, batches: int) -> float:
    """Training batches/s of the loader alone (augmentation and targets included), after its first batch (which
    starts the workers and decodes the first images)."""
    cache = ImageCache(DEFAULT_LOADING.image_share(workers, people.decoded_bytes()))  # as a trial sizes it
    dataset = TopDownDataset(people, input_hw, True, SHORT_AUGMENT, 0, cache)
    sampler = EpochSampler(len(people), shuffle=True, limit=(batches + 1) * batch)
    loader = make_loader(dataset, sampler, batch, workers, CPU, drop_last=True)
    seen, start = 0, None
    for images, *_ in loader:
        if start is None:
            start = time.perf_counter()
            continue
        seen += len(images)
    return seen / (time.perf_counter() - start)


# ---- the benchmark ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--persons", type=int, default=150_000, help="training persons (validation: a 25th of them)")
    p.add_argument("--steps", type=int, default=200, help="training steps of the trial's one epoch (default 200)")
    p.add_argument("--workers", default="0,1,2", help="worker counts of the trials (default 0,1,2)")
    p.add_argument("--rates", default=None, help="worker counts whose data path alone is timed (default: --workers)")
    p.add_argument("--arch", default="litehrnet-18")
    p.add_argument("--input", default="256x192")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the trial (default 2)")
    p.add_argument("--folder", default=None, help="where the set is generated (default: the hrnas cache folder)")
    p.add_argument("--source", choices=sorted(SOURCES), default="photos", help="photos (default) or drawn")
    p.add_argument("--cache-mb", type=int, default=None, help="passed to the trial's `hrnas train` (default: its own)")
    p.add_argument("--json", action="store_true", help="last line: one JSON object with every figure")
    args = p.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    input_hw = parse_input_size(args.input)
    folder = Path(args.folder) if args.folder else default_cache_dir() / "scale"

    print(f"load {os.getloadavg()[0]:.2f}; generating or reusing {args.persons} persons in {folder}", file=sys.stderr)
    start = time.perf_counter()
    root = coco_sized(folder, args.persons, source=args.source)
    generate_s = time.perf_counter() - start
    train_ann, val_ann = (root / "annotations" / f"person_keypoints_{s}.json" for s in ("train", "val"))
    images = root / "images"
    cache = root / "cache"  # the trials' cache (annotation index), fresh for the build timing
    shutil.rmtree(cache / "annotation-index", ignore_errors=True)
    start = time.perf_counter()
    build_index(train_ann, cache)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    people, _ = indexed_people(train_ann, images, cache)
    reuse_s = time.perf_counter() - start
    print(f"set {generate_s:.1f} s; index built in {build_s:.1f} s, reused in {reuse_s:.1f} s", file=sys.stderr)

    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "HRNAS_CACHE": str(cache), "PYTHONPATH": path}
    steps = min(args.steps, len(people) // args.batch)  # the trial's steps (fewer on a smoke-sized set)
    rows = []
    for w in workers:
        command = [
            *(sys.executable, "-m", "hrnas.cli", "train", "--arch", args.arch, "--data", f"{train_ann}:{images}"),
            *("--val", f"{val_ann}:{images}", "--input", args.input, "--epochs", "1", "--batch", str(args.batch)),
            *("--max-steps", str(args.steps), "--workers", str(w), "--threads", str(args.threads), "--json"),
            *(("--cache-mb", str(args.cache_mb)) if args.cache_mb is not None else ()),
        ]
        load = os.getloadavg()[0]
        print(f"trial with {w} worker(s) (load {load:.2f})", file=sys.stderr, flush=True)
        trial = run_trial(command, env)
        torch.set_num_threads(args.threads)
        data = loader_rate(people, input_hw, args.batch, w, batches=min(30, args.steps))
        history = trial["summary"]
        rows.append(
            {
                "workers": w,
                "startup_s": round(trial["startup_s"], 1),
                "data_loaded_s": round(trial["data_s"], 1),
                "peak_gib": round(trial["peak_bytes"] / GIB, 2),
                "peak_main_gib": round(trial["peak_main_bytes"] / GIB, 2),  # the training process alone
                "trial_wall_s": round(trial["wall_s"], 1),
                "trial_train_img_s": round(steps * args.batch / history["train_seconds"], 1),
                "data_img_s": round(data, 1),
                "load_before": round(load, 2),
                "ap": history["ap"],
                "load_after": round(os.getloadavg()[0], 2),
            }
        )
        print(f"    {json.dumps(rows[-1])}", file=sys.stderr, flush=True)  # each trial's figures as soon as known
    torch.set_num_threads(args.threads)
    joints = len(people[0].keypoints)
    model = model_step_rate(args.arch, input_hw, args.batch, 5, joints)
    rates = {r["workers"]: r["data_img_s"] for r in rows}
    for w in [int(w) for w in (args.rates or args.workers).split(",")]:
        if w not in rates:
            rates[w] = round(loader_rate(people, input_hw, args.batch, w, batches=min(30, args.steps)), 1)
    report(args, rows, model, build_s, reuse_s, generate_s, rates)
    if args.json:
        summary = {"index_build_s": build_s, "index_reuse_s": reuse_s, "model_img_s": model, "rows": rows}
        print(json.dumps({**summary, "data_img_s": rates}))


def report(
    args, rows: list[dict], model: float, build_s: float, reuse_s: float, generate_s: float, rates: dict[int, float]
) -> None:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    val = _validation(args.persons)
    print(f"{args.source}: {args.persons} training + {val} validation persons, ", end="")
    print(f"{args.arch} {args.input}, batch {args.batch}, ", end="")
    print(f"{args.steps} steps + a full validation pass, {args.threads} threads")
    print(f"set generated/reused in {generate_s:.1f} s; annotation index built in {build_s:.1f} s, ", end="")
    print(f"reused in {reuse_s:.1f} s (every trial reuses it)")
    print(f"model step (forward + backward + Adam, ready batches): {model:.1f} img/s\n")
    print(f"{'workers':>7} {'start-up':>9} {'peak PSS':>9} {'(trainer)':>9} ", end="")
    print(f"{'trial train':>12} {'data alone':>11} {'load':>5}  targets")
    for r in rows:
        checks = [
            f"start-up <= {TARGETS['startup_s']:.0f} s {verdict(r['startup_s'] <= TARGETS['startup_s'])}",
            f"peak <= {TARGETS['peak_gib']:.0f} GiB {verdict(r['peak_gib'] <= TARGETS['peak_gib'])}",
        ]
        if r["workers"] == 2:
            checks.append(f"data >= model {verdict(r['data_img_s'] >= model)}")
        print(
            f"{r['workers']:>7} {r['startup_s']:>7.1f} s {r['peak_gib']:>5.2f} GiB {r['peak_main_gib']:>5.2f} GiB"
            f" {r['trial_train_img_s']:>6.1f} img/s"
            f" {r['data_img_s']:>5.0f} img/s {r['load_before']:>5.2f}  {'; '.join(checks)}"
        )
    print("data path alone (augmented crops and targets, no model): ", end="")
    print(", ".join(f"{w} worker(s) {rate:.0f} img/s" for w, rate in sorted(rates.items())), end="")
    if 2 in rates:
        print(f"; with 2 workers data >= model step ({model:.1f} img/s): {verdict(rates[2] >= model)}", end="")
    print()


if __name__ == "__main__":
    main()
