"""COCO-format person keypoint data: where it lives, what it holds, what was skipped and why."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO


class DataError(ValueError):
    """Missing or malformed data; the message names the file and how to fix it."""


@dataclass(frozen=True)
class Split:
    annotations: Path
    images: Path


@dataclass(frozen=True)
class DataSource:
    train: Split
    val: Split
    description: str


def absolute_data(text: str) -> str:
    """The --data text with its paths made absolute, for trials that run in another working directory (Ray)."""
    if text == "synthetic":
        return text
    if ":" in text and text.split(":", 1)[0].endswith(".json"):
        ann, images = text.split(":", 1)
        return f"{Path(ann).resolve()}:{Path(images).resolve()}"
    return str(Path(text).resolve())


def worker_paths(data: str, val: str | None, val_boxes: str | None) -> tuple[str, str | None, str | None]:
    """--data, --val and --val-boxes made absolute before any worker starts: workers run in other working
    directories, and on other nodes of a cluster."""
    return (
        absolute_data(data),
        absolute_data(val) if val else None,
        str(Path(val_boxes).resolve()) if val_boxes else None,
    )


def parse_data(text: str, val: str | None = None) -> DataSource | None:
    """`synthetic` -> None (the caller generates it); `COCO_ROOT`; or `ANN.json:IMAGE_DIR` (train = val)."""
    if text == "synthetic":
        return None
    if ":" in text and text.split(":", 1)[0].endswith(".json"):
        ann, images = text.split(":", 1)
        train = Split(Path(ann), Path(images))
        source = DataSource(train, train, f"{ann} (train = val)")
    elif Path(text).is_dir():
        root = Path(text)
        source = DataSource(
            Split(root / "annotations/person_keypoints_train2017.json", root / "train2017"),
            Split(root / "annotations/person_keypoints_val2017.json", root / "val2017"),
            f"COCO root {root}",
        )
    else:
        raise DataError(
            f"--data {text!r}: expected 'synthetic', a COCO root folder (annotations/person_keypoints_*2017.json, "
            "train2017/, val2017/) or ANN.json:IMAGE_DIR"
        )
    if val is not None:
        ann, sep, images = val.partition(":")
        if not sep:
            raise DataError(f"--val {val!r}: expected ANN.json:IMAGE_DIR")
        source = DataSource(source.train, Split(Path(ann), Path(images)), source.description + f", val {ann}")
    for split in {source.train, source.val}:
        check_split(split)
    return source


def check_split(split: Split) -> None:
    if not split.annotations.is_file():
        raise DataError(f"annotation file {split.annotations} does not exist")
    if not split.images.is_dir():
        raise DataError(f"image folder {split.images} does not exist")


def load_coco(path: Path) -> COCO:
    """pycocotools COCO object, with a clear error for missing, unreadable or non-keypoint files."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"annotation file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"annotation file {path} is not valid JSON ({exc}); re-download or regenerate it") from None
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
        raise DataError(f"annotation file {path} lacks 'images', 'annotations' or 'categories' (not COCO format)")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


@dataclass(frozen=True)
class Person:
    image_id: int
    image: Path
    box: tuple[float, float, float, float]  # x, y, w, h
    keypoints: np.ndarray  # (J, 3): x, y, visibility (0 unlabelled, 1 labelled occluded, 2 visible)
    score: float = 1.0
    annotation_id: int = -1


@dataclass
class Skipped:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1

    def __str__(self) -> str:
        return ", ".join(f"{n} {reason}" for reason, n in self.counts.items()) or "none"


def ground_truth_people(
    coco: COCO, images: Path, require_keypoints: bool = True, check: bool = True
) -> tuple[list[Person], Skipped]:
    """One Person per non-crowd person annotation; skips (and counts) crowd, empty boxes, unlabelled persons."""
    people, skipped = [], Skipped()
    if check:
        check_images(coco, images)
    for ann in coco.loadAnns(coco.getAnnIds(catIds=[1])):
        x, y, w, h = ann["bbox"]
        if ann.get("iscrowd", 0):
            skipped.add("crowd")
        elif w <= 1 or h <= 1:
            skipped.add("empty box")
        elif require_keypoints and ann.get("num_keypoints", 0) == 0:
            skipped.add("persons with no labelled keypoint")
        else:
            info = coco.imgs[ann["image_id"]]
            keypoints = np.asarray(ann["keypoints"], dtype=np.float32).reshape(-1, 3)
            people.append(Person(ann["image_id"], images / info["file_name"], (x, y, w, h), keypoints, 1.0, ann["id"]))
    return people, skipped


UNKNOWN_WH = (640, 480)  # an image entry without width and height counts as COCO's most common size


def image_wh(info: dict) -> tuple[int, int]:
    """An image entry's width and height (UNKNOWN_WH where the file gives none)."""
    return info.get("width") or UNKNOWN_WH[0], info.get("height") or UNKNOWN_WH[1]


def decoded_bytes(coco: COCO, people: list[Person]) -> int:
    """Bytes of every image the people are on, decoded as RGB."""
    sizes = [image_wh(coco.imgs[i]) for i in {p.image_id for p in people}]
    return sum(w * h * 3 for w, h in sizes)


def read_json(path: str | Path, what: str):
    """A JSON file the user named (`what`: "detections file", ...), or DataError naming the file and the fault."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{what} {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{what} {path} is not valid JSON ({exc})") from None


def detected_people(coco: COCO, images: Path, detections: Path, threshold: float) -> tuple[list[Person], Skipped]:
    """Person boxes from a COCO detection results file, kept above a score threshold."""
    boxes = read_json(detections, "detections file")
    people, skipped = [], Skipped()
    joints = len(coco.loadCats(1)[0]["keypoints"]) if coco.cats else 17
    for det in boxes:
        if det.get("category_id", 1) != 1:
            continue
        if det["score"] < threshold:
            skipped.add(f"detections below score {threshold}")
            continue
        info = coco.imgs.get(det["image_id"])
        if info is None:
            raise DataError(f"detections file {detections} names image {det['image_id']}, absent from the annotations")
        empty = np.zeros((joints, 3), dtype=np.float32)
        people.append(Person(det["image_id"], images / info["file_name"], tuple(det["bbox"]), empty, det["score"]))
    return people, skipped


def check_images(coco: COCO, images: Path) -> None:
    check_files([info["file_name"] for info in coco.imgs.values()], images)


def check_files(names: list[str], images: Path) -> None:
    """Every image the annotations name must exist; the error names the first few missing.
    Each distinct name is checked once (a large synthetic set may repeat a few real images)."""
    absent = {name for name in set(names) if not (images / name).is_file()}
    missing = [name for name in names if name in absent]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DataError(
            f"{len(missing)} image(s) named in the annotations are missing from {images}: {shown}; give "
            "the image folder that holds them (ANN.json:IMAGE_DIR), or annotations of the images you have"
        )
