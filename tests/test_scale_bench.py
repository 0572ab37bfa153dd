"""bench/scale.py at a smoke size (so it cannot rot), and its memory probe: PSS summed over a process tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.scale import FILES, IMAGES_PER_PERSON, PHOTOS, coco_sized, tree_pss

ROOT = Path(__file__).resolve().parents[1]


def test_tree_pss_counts_the_children():
    before = tree_pss(os.getpid())
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; x = b'x' * (300 * 2**20); print(1, flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
    )
    try:
        child.stdout.readline()  # its 300 MiB are written
        during = tree_pss(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert during - before > 250 * 2**20
    assert tree_pss(child.pid) == 0  # gone: nothing, no error


def test_coco_sized_set_repeats_a_few_real_jpegs(tmp_path):
    root = coco_sized(tmp_path, 500)
    train = json.loads((root / "annotations/person_keypoints_train.json").read_text())
    val = json.loads((root / "annotations/person_keypoints_val.json").read_text())
    assert len(train["annotations"]) == 500 and len(val["annotations"]) == 20
    assert len(train["images"]) == round(500 * IMAGES_PER_PERSON)
    files = {image["file_name"] for image in train["images"] + val["images"]}
    assert len(files) == FILES and all((root / "images" / name).stat().st_size > 10_000 for name in files)
    for ann in train["annotations"]:
        x, y, w, h = ann["bbox"]
        points = [ann["keypoints"][k : k + 3] for k in range(0, 51, 3)]
        assert all(x - 0.2 <= px <= x + w + 0.2 and y - 0.2 <= py <= y + h + 0.2 for px, py, v in points if v > 0)
        assert ann["num_keypoints"] == sum(v > 0 for _, _, v in points)
    stamp = (root / "DONE").stat().st_mtime_ns
    assert coco_sized(tmp_path, 500) == root and (root / "DONE").stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_scale_benchmark_runs_at_a_smoke_size(tmp_path):
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "bench/scale.py", "--persons", "200", "--steps", "2", "--input", "64x64", "--batch", "4",
         "--workers", "0,1", "--folder", str(tmp_path), "--json"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert [row["workers"] for row in figures["rows"]] == [0, 1]
    for row in figures["rows"]:
        assert 0 < row["data_loaded_s"] < row["startup_s"] < row["trial_wall_s"] < time.perf_counter() - start
        assert 0.1 < row["peak_main_gib"] <= row["peak_gib"] < 3 and row["data_img_s"] > 0 and 0 <= row["ap"] <= 1
    assert figures["model_img_s"] > 0 and figures["index_build_s"] > 0
    assert "start-up <= 30 s" in done.stdout and "peak <= 3 GiB" in done.stdout


def test_photos_set_repeats_real_photos_under_distinct_names(tmp_path):
    """Source `photos`: every image entry is a file of its own (as in COCO, so caches fill as they would), each a
    link to one of the real photos, with that photo's persons."""
    root = coco_sized(tmp_path, 30, source="photos")
    train = json.loads((root / "annotations/person_keypoints_train.json").read_text())
    names = [image["file_name"] for image in train["images"]]
    assert len(train["annotations"]) == 30 and len(set(names)) == len(names) > 4
    originals = {p.name: p.read_bytes() for p in PHOTOS.glob("*.jpg")}
    assert all((root / "images" / n).read_bytes() == originals[n.split("-", 1)[1]] for n in names)
    source = json.loads((PHOTOS / "test_coco.json").read_text())
    real = {tuple(a["keypoints"]) for a in source["annotations"] if a["num_keypoints"] > 0}
    assert all(tuple(a["keypoints"]) in real for a in train["annotations"])
    assert len({a["id"] for a in train["annotations"]}) == 30
