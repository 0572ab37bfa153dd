"""A compact, cached index of a COCO person-keypoint annotation file.

Parsing train2017's 238 MB of JSON and building one Python object per annotation takes longer than a short trial's
training; the index does it once per file (keyed by its absolute path, size and mtime) and stores the ground-truth
people as a few numpy arrays in one `.npz` under the cache folder, which every later trial and worker opens in a
fraction of the time. The people it yields are exactly those of `pose.coco.ground_truth_people`, in the same order,
from a `PersonTable`: the arrays themselves, one Person built per lookup. A list of 150,000 Person objects takes
150 MiB, and every data-loader worker forked from the trial copies the pages it touches (reference counts are
writes), so each worker ended up with its own copy; arrays are only read.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose.coco import DataError, Person, Skipped, check_files, ground_truth_people, image_wh, load_coco
from pose.synthetic import default_cache_dir

FORMAT = 2  # bump when the arrays below change meaning; older indexes are then rebuilt
FIELDS = (
    *("format", "source", "size", "mtime_ns", "files", "sizes", "image_ids", "image_of", "annotation_ids", "boxes"),
    *("keypoints", "offsets", "skip_reasons", "skip_counts"),
)


class Stats:
    """How many indexes this process built and how many it reused (tests check that a reload does not parse)."""

    built = 0
    reused = 0


def index_path(annotations: Path, cache: Path | None = None) -> Path:
    """Where the index of an annotation file lives: one file per absolute path (the key checks size and mtime)."""
    source = str(Path(annotations).resolve())
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    return (cache or default_cache_dir()) / "annotation-index" / f"{Path(source).stem}-{digest}.npz"


def _key(annotations: Path) -> tuple[str, int, int]:
    if not Path(annotations).is_file():
        raise DataError(f"annotation file {annotations} does not exist")
    stat = Path(annotations).stat()
    return str(Path(annotations).resolve()), stat.st_size, stat.st_mtime_ns


def build_index(annotations: Path, cache: Path | None = None) -> Path:
    """Parse the annotation file once and write its people atomically (temporary file, then rename)."""
    source, size, mtime_ns = _key(annotations)
    coco = load_coco(annotations)
    files = [info["file_name"] for info in coco.imgs.values()]
    sizes = [image_wh(info) for info in coco.imgs.values()]
    position = {image_id: i for i, image_id in enumerate(coco.imgs)}
    people, skipped = ground_truth_people(coco, Path(), require_keypoints=True, check=False)
    keypoints = [p.keypoints.reshape(-1) for p in people]
    arrays = {
        "format": np.array(FORMAT),
        "source": np.array(source),
        "size": np.array(size, dtype=np.int64),
        "mtime_ns": np.array(mtime_ns, dtype=np.int64),
        "files": np.array(files, dtype=str),
        "sizes": np.array(sizes, dtype=np.int64).reshape(-1, 2),
        "image_ids": np.array([p.image_id for p in people], dtype=np.int64),
        "image_of": np.array([position[p.image_id] for p in people], dtype=np.int64),
        "annotation_ids": np.array([p.annotation_id for p in people], dtype=np.int64),
        # float64: the boxes come back as the very numbers the JSON held
        "boxes": np.array([p.box for p in people], dtype=np.float64).reshape(-1, 4),
        "keypoints": np.concatenate(keypoints) if keypoints else np.zeros(0, dtype=np.float32),
        "offsets": np.cumsum([0] + [len(k) for k in keypoints], dtype=np.int64),
        "skip_reasons": np.array(list(skipped.counts), dtype=str),
        "skip_counts": np.array(list(skipped.counts.values()), dtype=np.int64),
    }
    target = index_path(annotations, cache)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=target.stem + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **arrays)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    Stats.built += 1
    return target


def _read(path: Path, key: tuple[str, int, int]) -> dict[str, np.ndarray] | None:
    """The index's arrays, or None when it is absent, stale, of another format or damaged."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    if not set(FIELDS) <= set(arrays) or int(arrays["format"]) != FORMAT:
        return None
    if (str(arrays["source"]), int(arrays["size"]), int(arrays["mtime_ns"])) != key:
        return None
    return arrays


@dataclass(frozen=True)
class PersonTable(Sequence[Person]):
    """The people of an index as arrays; `table[i]` builds person i (equal to `ground_truth_people`'s)."""

    images: Path
    files: np.ndarray  # (F,) file names, str
    sizes: np.ndarray  # (F, 2) width, height
    image_ids: np.ndarray  # (N,)
    image_of: np.ndarray  # (N,) index into files
    annotation_ids: np.ndarray  # (N,)
    boxes: np.ndarray  # (N, 4) x, y, w, h
    keypoints: np.ndarray  # all persons' (x, y, v) triples, flat
    offsets: np.ndarray  # (N + 1,) person i's keypoints are keypoints[offsets[i]:offsets[i + 1]]

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> Person:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(f"person {i} of {len(self)}")
        i = int(i) % len(self)
        box = tuple(self.boxes[i].tolist())
        points = self.keypoints[self.offsets[i] : self.offsets[i + 1]].reshape(-1, 3)
        image = self.images / str(self.files[self.image_of[i]])
        return Person(int(self.image_ids[i]), image, box, points, 1.0, int(self.annotation_ids[i]))

    def decoded_bytes(self) -> int:
        """Bytes of every image these people are on, decoded as RGB (what a cache of all of them holds)."""
        used = self.sizes[np.unique(self.image_of)]
        return int((used[:, 0] * used[:, 1]).sum() * 3)


def indexed_people(annotations: Path, images: Path, cache: Path | None = None) -> tuple[PersonTable, Skipped]:
    """`ground_truth_people(load_coco(annotations), images)`, read from the index (built first when needed)."""
    key = _key(annotations)
    path = index_path(annotations, cache)
    arrays = _read(path, key)
    if arrays is None:
        arrays = _read(build_index(annotations, cache), key)
        if arrays is None:  # the file changed while it was being indexed
            arrays = _read(build_index(annotations, cache), key)
            if arrays is None:
                raise DataError(f"annotation file {annotations} kept changing while it was read; try again")
    else:
        Stats.reused += 1
    check_files(arrays["files"].tolist(), images)
    fields = ("files", "sizes", "image_ids", "image_of", "annotation_ids", "boxes", "keypoints", "offsets")
    table = PersonTable(Path(images), *(arrays[name] for name in fields))
    skipped = Skipped(dict(zip(arrays["skip_reasons"].tolist(), arrays["skip_counts"].tolist(), strict=True)))
    return table, skipped
