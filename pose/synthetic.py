"""Deterministic synthetic COCO-format person keypoints: the embedded default data set (a proxy, not COCO).

Each image holds one or more articulated figures (head, torso, two-segment limbs) in random poses, scales, widths
and colours over a cluttered background, with occluders and truncation at the borders. The 17 COCO keypoints carry
COCO visibility flags: 2 visible, 1 labelled but occluded (by an occluder or another figure), 0 unlabelled
(outside the image, or randomly missed as real annotators do). Written once, as JPEG images and a
person_keypoints JSON, into a cache folder keyed by the generator version and settings.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pose.geometry import COCO_KEYPOINTS

GENERATOR_VERSION = 1
SKELETON = [
    [16, 14],
    [14, 12],
    [17, 15],
    [15, 13],
    [12, 13],
    [6, 12],
    [7, 13],
    [6, 7],
    [6, 8],
    [7, 9],
    [8, 10],
    [9, 11],
    [2, 3],
    [1, 2],
    [1, 3],
    [2, 4],
    [3, 5],
    [4, 6],
    [5, 7],
]


@dataclass(frozen=True)
class SyntheticConfig:
    train_images: int = 1200
    val_images: int = 150
    image_size: tuple[int, int] = (224, 224)  # width, height
    max_people: int = 3
    seed: int = 0

    def key(self) -> str:
        text = json.dumps({"version": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return f"synthetic-v{GENERATOR_VERSION}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def default_cache_dir() -> Path:
    return Path(os.environ.get("HRNAS_CACHE", Path.home() / ".cache" / "hrnas"))


def ensure_synthetic(config: SyntheticConfig | None = None, cache: Path | None = None) -> Path:
    """Generate the data set once and return its folder; safe when several processes start at once.

    The first process to take the lock file generates into a private temporary folder and renames it into place
    with its DONE marker inside; the others wait on the lock, then find the finished set. A finished set is never
    deleted or rewritten, so a process reading it is never disturbed; a killed generator leaves only its
    temporary folder, which the next one removes.
    """
    config = config or SyntheticConfig()
    root = (cache or default_cache_dir()) / config.key()
    if (root / "DONE").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.with_name(root.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if (root / "DONE").is_file():
            return root  # made by the process that held the lock before us
        for stale in root.parent.glob(root.name + ".tmp*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed generator: no live one without the lock
        shutil.rmtree(root, ignore_errors=True)  # no DONE: not a finished set
        tmp = root.with_name(root.name + f".tmp{os.getpid()}")
        for split, count, offset in (("train", config.train_images, 0), ("val", config.val_images, 10**6)):
            write_split(tmp, split, count, config, offset)
        (tmp / "DONE").write_text(json.dumps(asdict(config)))
        tmp.rename(root)
    return root


def write_split(root: Path, split: str, count: int, config: SyntheticConfig, offset: int) -> None:
    image_dir = root / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        image_id = offset + index + 1
        rng = np.random.default_rng([config.seed, image_id])
        picture, people = render_image(rng, config)
        name = f"{image_id:07d}.jpg"
        picture.save(image_dir / name, quality=92)
        width, height = config.image_size
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for person in people:
            person.update(id=len(annotations) + 1 + offset, image_id=image_id, category_id=1, iscrowd=0)
            annotations.append(person)
    categories = [
        {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO_KEYPOINTS), "skeleton": SKELETON}
    ]
    data = {
        "info": {"description": f"hrnas synthetic people v{GENERATOR_VERSION} (a proxy, not COCO)"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"person_keypoints_{split}.json").write_text(json.dumps(data))


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    width, height = size
    top, bottom = np.array(_colour(rng), float), np.array(_colour(rng), float)
    ramp = np.linspace(0, 1, height)[:, None, None]
    pixels = top * (1 - ramp) + bottom * ramp + rng.normal(0, 18, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 12))):  # clutter: boxes, blobs and sticks, some in skin-like colours
        x, y = rng.uniform(-20, width), rng.uniform(-20, height)
        w, h = rng.uniform(8, width / 2.5), rng.uniform(8, height / 2.5)
        kind = rng.integers(3)
        fill = _colour(rng)
        if kind == 0:
            draw.rectangle([x, y, x + w, y + h], fill=fill)
        elif kind == 1:
            draw.ellipse([x, y, x + w, y + h], fill=fill)
        else:
            draw.line([x, y, x + w, y + h], fill=fill, width=int(rng.integers(2, 9)))
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.2))))


def _pose(rng: np.random.Generator, height: float, centre: np.ndarray) -> np.ndarray:
    """17 COCO keypoints of a figure facing the camera (its left side on the image's right)."""

    def step(origin, angle_deg, length):
        a = math.radians(angle_deg)
        return origin + length * np.array([math.sin(a), math.cos(a)])  # angle 0 points down

    breadth = rng.uniform(0.7, 1.15)
    tilt = rng.normal(0, 12)
    pelvis = centre + np.array([0, 0.08 * height])
    neck = step(pelvis, 180 + tilt, 0.30 * height)
    across = np.array([math.cos(math.radians(tilt)), math.sin(math.radians(tilt))])
    k = np.zeros((17, 2))
    k[5], k[6] = neck + across * 0.11 * height * breadth, neck - across * 0.11 * height * breadth
    k[11], k[12] = pelvis + across * 0.075 * height * breadth, pelvis - across * 0.075 * height * breadth
    for shoulder, elbow, wrist, side in ((5, 7, 9, 1), (6, 8, 10, -1)):
        upper = rng.uniform(-40, 170) * side
        k[elbow] = step(k[shoulder], upper, 0.17 * height)
        k[wrist] = step(k[elbow], upper + rng.uniform(-20, 140) * side, 0.15 * height)
    for hip, knee, ankle, side in ((11, 13, 15, 1), (12, 14, 16, -1)):
        thigh = rng.uniform(-15, 55) * side
        k[knee] = step(k[hip], thigh, 0.24 * height)
        k[ankle] = step(k[knee], thigh - rng.uniform(0, 70) * side, 0.23 * height)
    head = step(neck, 180 + tilt + rng.normal(0, 10), 0.11 * height)
    turn = rng.uniform(-0.5, 0.5)  # yaw of the head: shifts the face sideways
    unit = 0.07 * height
    k[0] = head + np.array([turn * unit, 0.25 * unit])
    k[1], k[2] = (
        head + np.array([(0.4 + turn) * unit, -0.2 * unit]),
        head + np.array([(-0.4 + turn) * unit, -0.2 * unit]),
    )
    k[3], k[4] = head + np.array([(0.95 + turn * 0.5) * unit, 0]), head + np.array([(-0.95 + turn * 0.5) * unit, 0])
    return k


def _draw_figure(
    draw: ImageDraw.ImageDraw, k: np.ndarray, height: float, rng: np.random.Generator, mask: bool = False
) -> None:
    """Draw one figure; with mask=True every part is drawn as 255 (same geometry, same random draws)."""
    shirt, pants, skin = _colour(rng), _colour(rng), tuple(int(v) for v in rng.integers([150, 90, 60], [255, 200, 170]))
    if mask:
        shirt = pants = skin = 255
    limb = max(2, int(0.055 * height * rng.uniform(0.8, 1.3)))

    def seg(a, b, fill, width=limb):
        draw.line([tuple(k[a]), tuple(k[b])], fill=fill, width=width)
        r = width / 2
        draw.ellipse([k[b][0] - r, k[b][1] - r, k[b][0] + r, k[b][1] + r], fill=fill)

    for a, b in ((11, 13), (13, 15), (12, 14), (14, 16)):
        seg(a, b, pants, int(limb * 1.2))
    draw.polygon([tuple(k[5]), tuple(k[6]), tuple(k[12]), tuple(k[11])], fill=shirt)
    for a, b, fill in ((5, 7, shirt), (7, 9, skin), (6, 8, shirt), (8, 10, skin)):
        seg(a, b, fill)
    head = (k[3] + k[4]) / 2
    r = 0.075 * height
    draw.ellipse([head[0] - r, head[1] - 1.15 * r, head[0] + r, head[1] + 1.15 * r], fill=skin)
    dot = max(1, int(0.012 * height))
    for j, fill in ((1, (20, 20, 20)), (2, (20, 20, 20)), (0, (150, 40, 40))):
        fill = 255 if mask else fill
        draw.ellipse([k[j][0] - dot, k[j][1] - dot, k[j][0] + dot, k[j][1] + dot], fill=fill)


def render_image(rng: np.random.Generator, config: SyntheticConfig) -> tuple[Image.Image, list[dict]]:
    width, height = config.image_size
    image = _background(rng, config.image_size)
    draw = ImageDraw.Draw(image)
    masks, poses, heights = [], [], []
    for _ in range(int(rng.integers(1, config.max_people + 1))):
        person_height = rng.uniform(0.45, 1.0) * height
        centre = np.array([rng.uniform(0.1, 0.9) * width, rng.uniform(0.35, 0.65) * height])
        k = _pose(rng, person_height, centre)
        seed = int(rng.integers(2**31))
        _draw_figure(draw, k, person_height, np.random.default_rng(seed))
        mask = Image.new("L", config.image_size)
        _draw_figure(ImageDraw.Draw(mask), k, person_height, np.random.default_rng(seed), mask=True)
        mask_array = np.asarray(mask) > 0
        for earlier in masks:  # the new figure covers those drawn before it
            earlier &= ~mask_array
        masks.append(mask_array)
        poses.append(k)
        heights.append(person_height)
    occluders = np.zeros((height, width), bool)
    for _ in range(int(rng.integers(0, 3))):
        w, h = rng.uniform(0.1, 0.35) * width, rng.uniform(0.1, 0.35) * height
        x, y = rng.uniform(-w / 2, width - w / 2), rng.uniform(-h / 2, height - h / 2)
        draw.rectangle([x, y, x + w, y + h], fill=_colour(rng))
        occluders[max(0, int(y)) : int(y + h) + 1, max(0, int(x)) : int(x + w) + 1] = True
    people = []
    for k, mask, _person_height in zip(poses, masks, heights, strict=True):
        visible_mask = mask & ~occluders
        if visible_mask.sum() < 30:
            continue  # hidden behind others: not annotated, like an unlabelled background person
        keypoints = []
        for x, y in k:
            inside = 0 <= x < width and 0 <= y < height
            if not inside or rng.random() < 0.03:
                keypoints += [0, 0, 0]
                continue
            xi, yi = int(x), int(y)
            covered = occluders[yi, xi] or not visible_mask[max(0, yi - 1) : yi + 2, max(0, xi - 1) : xi + 2].any()
            keypoints += [round(float(x), 2), round(float(y), 2), 1 if covered else 2]
        labelled = sum(1 for v in keypoints[2::3] if v > 0)
        ys, xs = np.nonzero(mask)
        box = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
        people.append(
            {
                "keypoints": keypoints,
                "num_keypoints": labelled,
                "bbox": box,
                "area": float(mask.sum()),
                "segmentation": [],
            }
        )
    return image, people
