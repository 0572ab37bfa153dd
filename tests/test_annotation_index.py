"""The annotation index yields exactly the people of a fresh parse, is reused, rebuilt when stale or damaged, and
safe to build from several processes at once."""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pose.annotation_index import Stats, index_path, indexed_people
from pose.coco import DataError, Skipped, decoded_bytes, ground_truth_people, load_coco, parse_data
from pose.synthetic import SyntheticConfig, ensure_synthetic
from pose.train import load_data

MINI = Path(__file__).parent / "data" / "coco-mini"
ANN = MINI / "test_coco.json"


def _records(result):
    people, skipped = result
    rows = [
        (
            p.image_id,
            p.image,
            p.box,
            p.keypoints.dtype,
            p.keypoints.shape,
            p.keypoints.tolist(),
            p.score,
            p.annotation_id,
        )
        for p in people
    ]
    return rows, dict(skipped.counts)


def _parsed(annotations: Path, images: Path):
    return _records(ground_truth_people(load_coco(annotations), images))


def test_coco_mini_people_are_exactly_those_of_a_fresh_parse(tmp_path):
    expected = _parsed(ANN, MINI)
    assert len(expected[0]) > 5 and expected[1]  # real people and real skips to compare
    built = _records(indexed_people(ANN, MINI, tmp_path))
    reused = _records(indexed_people(ANN, MINI, tmp_path))
    assert built == expected and reused == expected


def test_synthetic_people_are_exactly_those_of_a_fresh_parse(tmp_path):
    root = ensure_synthetic(SyntheticConfig(train_images=6, val_images=3, seed=3), tmp_path / "data")
    for split in ("train", "val"):
        annotations, images = root / f"annotations/person_keypoints_{split}.json", root / f"images/{split}"
        expected = _parsed(annotations, images)
        assert expected[0]
        assert _records(indexed_people(annotations, images, tmp_path / "cache")) == expected


def test_second_load_reuses_the_index_and_a_touched_file_rebuilds_it(tmp_path):
    ann = tmp_path / "ann.json"
    shutil.copy(ANN, ann)
    indexed_people(ann, MINI, tmp_path)
    index = index_path(ann, tmp_path)
    written = index.stat().st_mtime_ns
    built, reused = Stats.built, Stats.reused
    indexed_people(ann, MINI, tmp_path)
    assert (Stats.built, Stats.reused) == (built, reused + 1)
    assert index.stat().st_mtime_ns == written
    stat = ann.stat()
    os.utime(ann, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert _records(indexed_people(ann, MINI, tmp_path)) == _parsed(ann, MINI)
    assert Stats.built == built + 1


def test_damaged_index_is_rebuilt(tmp_path):
    indexed_people(ANN, MINI, tmp_path)
    index = index_path(ANN, tmp_path)
    for damage in (b"not a zip file", index.read_bytes()[:200]):
        index.write_bytes(damage)
        built = Stats.built
        assert _records(indexed_people(ANN, MINI, tmp_path)) == _parsed(ANN, MINI)
        assert Stats.built == built + 1


def test_missing_image_is_still_named(tmp_path):
    shutil.copy(ANN, tmp_path / "ann.json")
    for name in ("000000000785.jpg", "000000040083.jpg", "000000196141.jpg"):
        shutil.copy(MINI / name, tmp_path / name)
    with pytest.raises(DataError, match=r"1 image\(s\) .* 000000197388.jpg; give the image folder that holds them"):
        indexed_people(tmp_path / "ann.json", tmp_path, tmp_path / "cache")
    with pytest.raises(DataError, match="does not exist"):
        indexed_people(tmp_path / "nope.json", MINI, tmp_path / "cache")


def _index(cache: str, barrier, results) -> None:
    barrier.wait()
    results.put(_records(indexed_people(ANN, MINI, Path(cache))))


def test_concurrent_builds_all_succeed(tmp_path):
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(3), context.Queue()
    workers = [context.Process(target=_index, args=(str(tmp_path), barrier, results)) for _ in range(3)]
    for w in workers:
        w.start()
    answers = [results.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert all(answer == _parsed(ANN, MINI) for answer in answers)
    assert [p.name for p in (tmp_path / "annotation-index").iterdir()] == [index_path(ANN, tmp_path).name]


def test_load_data_trains_on_the_indexed_people(tmp_path, monkeypatch):
    monkeypatch.setenv("HRNAS_CACHE", str(tmp_path))
    data = load_data(parse_data(f"{ANN}:{MINI}"))
    assert index_path(ANN, tmp_path).is_file()
    people, skipped = ground_truth_people(load_coco(ANN), MINI)
    assert _records((data.train, skipped)) == _records((people, skipped))
    assert data.skipped["train"] == str(skipped)


def test_the_people_are_arrays_not_python_objects(tmp_path):
    """A worker forked from the trial only reads the table: it holds numpy arrays (no per-person objects whose
    reference counts would copy their pages into every worker), and each lookup builds a fresh Person."""
    table, _ = indexed_people(ANN, MINI, tmp_path)
    assert all(isinstance(value, (np.ndarray, Path)) for value in vars(table).values())
    assert all(value.dtype != object for value in vars(table).values() if isinstance(value, np.ndarray))
    assert _records(([table[0]], Skipped())) == _records(([table[0]], Skipped())) and table[0] is not table[0]
    assert _records(([table[-1]], Skipped())) == _records(([table[len(table) - 1]], Skipped()))
    with pytest.raises(IndexError):
        table[len(table)]


def test_decoded_bytes_count_each_image_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HRNAS_CACHE", str(tmp_path))
    table, _ = indexed_people(ANN, MINI, tmp_path)
    coco = load_coco(ANN)
    on = {p.image_id for p in table}
    assert len(on) < len(table)  # several persons share an image, and are counted once
    expected = sum(coco.imgs[i]["width"] * coco.imgs[i]["height"] * 3 for i in on)
    assert table.decoded_bytes() == expected
    people, _ = ground_truth_people(coco, MINI)
    assert decoded_bytes(coco, people) == expected
    data = load_data(parse_data(f"{ANN}:{MINI}"))
    assert data.image_bytes == 2 * expected  # the mini set validates on its training file
