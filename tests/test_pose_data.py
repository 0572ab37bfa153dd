"""COCO-format data path: targets, flips, affine round trip, decoding, evaluation on real COCO images, errors."""

import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pose.coco import DataError, absolute_data, detected_people, ground_truth_people, load_coco, parse_data
from pose.dataset import NO_AUGMENT, Augment, ImageCache, TopDownDataset
from pose.decode import argmax_quarter_offset, to_image_coordinates
from pose.evaluate import Prediction, coco_keypoint_stats, rescore, to_results
from pose.geometry import COCO_KEYPOINTS, affine_matrix, apply_affine, box_to_center_scale, flip_permutation
from pose.synthetic import SyntheticConfig, ensure_synthetic
from pose.targets import gaussian_heatmaps

MINI = Path(__file__).parent / "data" / "coco-mini"
ANN = MINI / "test_coco.json"


@pytest.fixture(scope="module")
def mini():
    coco = load_coco(ANN)
    people, skipped = ground_truth_people(coco, MINI)
    return coco, people, skipped


def test_loader_reads_real_coco_mini(mini):
    coco, people, skipped = mini
    assert len(coco.imgs) == 4
    assert len(people) == 12 and skipped.counts == {"persons with no labelled keypoint": 2}
    dataset = TopDownDataset(people, (256, 192), train=False)
    image, heatmaps, weights, index = dataset[0]
    assert image.shape == (3, 256, 192) and heatmaps.shape == (17, 64, 48)
    assert weights.sum() == (people[0].keypoints[:, 2] > 0).sum()


def test_ground_truth_as_predictions_scores_ap_one(mini):
    coco, people, _ = mini
    preds = []
    for p in people:
        keypoints = np.concatenate([p.keypoints[:, :2], (p.keypoints[:, 2:] > 0).astype(float)], 1)
        preds.append(Prediction(p.image_id, keypoints, 1.0, p.box[2] * p.box[3]))
    stats = coco_keypoint_stats(coco, to_results(preds))
    assert stats["ap"] == pytest.approx(1.0) and stats["ar"] == pytest.approx(1.0)


def test_noisy_predictions_score_lower(mini):
    coco, people, _ = mini
    rng = np.random.default_rng(0)
    preds = []
    for p in people:
        xy = p.keypoints[:, :2] + rng.normal(0, 8, (17, 2))
        preds.append(Prediction(p.image_id, np.concatenate([xy, np.ones((17, 1))], 1), 1.0, 1.0))
    assert coco_keypoint_stats(coco, to_results(preds, nms=False))["ap"] < 0.9


def test_detections_are_read_with_threshold(mini):
    coco, _, _ = mini
    people, skipped = detected_people(coco, MINI, MINI / "test_coco_det_AP_H_56.json", threshold=0.5)
    assert 0 < len(people) < 118 and sum(skipped.counts.values()) == 118 - len(people)


def test_heatmap_peaks_and_weights():
    joints = np.array([[10.0, 5.0], [3.3, 7.6], [100.0, 5.0], [4.0, 4.0]])
    visible = np.array([2, 1, 2, 0])
    heatmaps, weights = gaussian_heatmaps(joints, visible, (24, 32), sigma=1.5)
    assert heatmaps.shape == (4, 32, 24)
    assert weights.tolist() == [1, 1, 0, 0]  # outside the map, and unlabelled, get weight 0
    assert heatmaps[0].max() == pytest.approx(1.0) and np.unravel_index(heatmaps[0].argmax(), (32, 24)) == (5, 10)
    assert heatmaps[2].max() == 0 and heatmaps[3].max() == 0
    coords, _ = argmax_quarter_offset(heatmaps[None, :2])
    assert np.abs(coords[0] - joints[:2]).max() <= 0.5  # quarter offset lands within half a pixel


def test_decoding_quarter_offset_direction():
    heatmaps = np.zeros((1, 1, 8, 8))
    heatmaps[0, 0, 4, 4], heatmaps[0, 0, 4, 5], heatmaps[0, 0, 3, 4] = 1.0, 0.5, 0.2
    coords, maxvals = argmax_quarter_offset(heatmaps)
    assert coords[0, 0].tolist() == [4.25, 3.75] and maxvals[0, 0] == 1.0


def test_affine_round_trip_within_half_a_pixel():
    rng = np.random.default_rng(0)
    for _ in range(20):
        box = (rng.uniform(0, 300), rng.uniform(0, 300), rng.uniform(20, 200), rng.uniform(20, 200))
        center, size = box_to_center_scale(box, 192 / 256)
        matrix = affine_matrix(center, size, rng.uniform(-40, 40), (192, 256))
        points = rng.uniform(0, 400, (17, 2))
        crop_points = apply_affine(points, matrix)
        inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
        back = apply_affine(crop_points, inverse)
        assert np.abs(back - points).max() < 1e-6
    # keypoint -> crop -> heatmap cell -> decoded image coordinates, unrotated as at test time
    center, size = box_to_center_scale((50, 40, 120, 200), 96 / 128)
    matrix = affine_matrix(center, size, 0.0, (96, 128))
    points = rng.uniform([60, 50], [160, 230], (17, 2))
    heatmaps, _ = gaussian_heatmaps(apply_affine(points, matrix) / 4, np.full(17, 2), (24, 32), sigma=1.0)
    coords, _ = argmax_quarter_offset(heatmaps[None])
    back = to_image_coordinates(coords[0], center, size, (24, 32))
    stride = size[0] / 24  # image pixels per heatmap pixel
    assert np.abs(back - points).max() <= 0.5 * stride


def test_flip_swaps_left_and_right(mini):
    _, people, _ = mini
    person = people[0]
    always_flip = Augment(flip=1.0, half_body=0, scale=0, rotation=0, rotation_p=0)
    flipped = TopDownDataset([person], (256, 192), train=True, augment=always_flip)
    plain = TopDownDataset([person], (256, 192), train=True, augment=NO_AUGMENT)
    img_f, hm_f, w_f, _ = (t.numpy() if hasattr(t, "numpy") else t for t in flipped[0])
    img_p, hm_p, w_p, _ = (t.numpy() if hasattr(t, "numpy") else t for t in plain[0])
    assert np.allclose(img_f, img_p[:, :, ::-1])
    perm = flip_permutation()
    mirrored = [n.replace("left", "LEFT").replace("right", "left").replace("LEFT", "right") for n in COCO_KEYPOINTS]
    assert [COCO_KEYPOINTS[j] for j in perm] == mirrored  # each joint's left/right twin by name (nose stays)
    np.testing.assert_allclose(w_f, w_p[perm])
    for j in range(17):
        if w_p[j] > 0:
            peak_p = np.unravel_index(hm_p[j].argmax(), hm_p[j].shape)
            peak_f = np.unravel_index(hm_f[perm[j]].argmax(), hm_f[j].shape)
            assert peak_p[0] == peak_f[0] and abs((47 - peak_p[1]) - peak_f[1]) <= 1


def test_rescoring_is_box_times_mean_confident():
    keypoints = np.zeros((17, 3))
    keypoints[:4, 2] = [0.9, 0.5, 0.1, 0.3]
    assert rescore(keypoints, 0.8) == pytest.approx(0.8 * np.mean([0.9, 0.5, 0.3]))
    assert rescore(np.zeros((17, 3)), 1.0) == 0.0


def test_synthetic_is_deterministic_and_coco_format(tmp_path):
    config = SyntheticConfig(train_images=6, val_images=3, seed=3)
    a = ensure_synthetic(config, tmp_path / "a")
    b = ensure_synthetic(config, tmp_path / "b")
    for rel in ("annotations/person_keypoints_train.json", "annotations/person_keypoints_val.json"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert sorted(p.read_bytes() for p in (a / "images/train").iterdir()) == sorted(
        p.read_bytes() for p in (b / "images/train").iterdir()
    )
    coco = load_coco(a / "annotations/person_keypoints_train.json")
    flags = np.concatenate([np.asarray(x["keypoints"]).reshape(-1, 3)[:, 2] for x in coco.dataset["annotations"]])
    assert set(flags.tolist()) <= {0, 1, 2} and (flags == 2).any()
    other = ensure_synthetic(SyntheticConfig(train_images=6, val_images=3, seed=4), tmp_path / "a")
    assert other != a


def test_synthetic_has_all_visibility_kinds(tmp_path):
    root = ensure_synthetic(SyntheticConfig(train_images=40, val_images=2), tmp_path)
    coco = load_coco(root / "annotations/person_keypoints_train.json")
    flags = np.concatenate([np.asarray(x["keypoints"]).reshape(-1, 3)[:, 2] for x in coco.dataset["annotations"]])
    assert {0, 1, 2} <= set(flags.tolist())
    assert max(len(coco.getAnnIds(imgIds=[i])) for i in coco.imgs) > 1  # several people per image


def _generate(cache: str, barrier, results) -> None:
    """One of several processes asking for the same synthetic set at the same moment."""
    barrier.wait()
    root = ensure_synthetic(SyntheticConfig(train_images=4, val_images=2, seed=5), Path(cache))
    results.put((str(root), os.stat(root).st_ino))


def test_concurrent_generation_makes_one_set_and_never_replaces_it(tmp_path):
    """Three processes start on one empty cache: all get the same complete set, generated once and never replaced
    (a replaced folder has a new inode, which a process that already returned it would no longer be reading)."""
    cache = tmp_path / "cache"
    (cache / (SyntheticConfig(train_images=4, val_images=2, seed=5).key() + ".tmp999999")).mkdir(parents=True)
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(3), context.Queue()
    workers = [context.Process(target=_generate, args=(str(cache), barrier, results)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    answers = {results.get(timeout=10) for _ in workers}
    assert len(answers) == 1  # one folder, one inode: the first finished set is the one every process uses
    root = Path(next(iter(answers))[0])
    assert sorted(p.name for p in cache.iterdir()) == sorted([root.name, root.name + ".lock"])  # no temporaries
    alone = ensure_synthetic(SyntheticConfig(train_images=4, val_images=2, seed=5), tmp_path / "alone")
    files = sorted(p.relative_to(alone) for p in alone.rglob("*") if p.is_file())
    assert len(files) == 4 + 2 + 2 + 1  # images, two annotation files, DONE
    assert sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file()) == files
    assert all((root / f).read_bytes() == (alone / f).read_bytes() for f in files)


def test_image_cache_evicts_least_recently_used_past_its_byte_limit(tmp_path):
    paths = {}
    for name, side in (("a", 10), ("b", 10), ("c", 10), ("d", 10), ("big", 20)):
        paths[name] = tmp_path / f"{name}.png"
        Image.new("RGB", (side, side), (side, 0, 0)).save(paths[name])
    cache = ImageCache(max_bytes=2 * 10 * 10 * 3)  # room for two 10x10 images
    for name in ("a", "b", "c"):
        cache.get(paths[name])
    assert list(cache.images) == [paths["b"], paths["c"]] and cache.bytes == 600  # a, the oldest, went
    cache.get(paths["b"])  # a hit makes b the most recent
    cache.get(paths["d"])
    assert list(cache.images) == [paths["b"], paths["d"]]  # c went, not b
    rng = np.random.default_rng(0)
    for name in rng.choice(["a", "b", "c", "d"], 30):
        image = cache.get(paths[name])
        assert image.size == (10, 10) and list(cache.images)[-1] == paths[name]
        assert cache.bytes == sum(i.width * i.height * 3 for i in cache.images.values()) <= cache.max_bytes
    assert cache.get(paths["big"]).size == (20, 20)  # larger than the limit alone: kept, everything else dropped
    assert list(cache.images) == [paths["big"]] and cache.bytes == 1200


# ---- bad input -------------------------------------------------------------------------------------------------
def test_missing_annotation_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_coco(tmp_path / "nope.json")


def test_corrupt_annotation_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(DataError, match="not valid JSON"):
        load_coco(bad)
    bad.write_text('{"images": []}')
    with pytest.raises(DataError, match="not COCO format"):
        load_coco(bad)


def test_missing_image_is_named(tmp_path):
    shutil.copy(ANN, tmp_path / "ann.json")
    for name in ("000000000785.jpg", "000000040083.jpg", "000000196141.jpg"):
        shutil.copy(MINI / name, tmp_path / name)
    coco = load_coco(tmp_path / "ann.json")
    with pytest.raises(DataError, match="000000197388.jpg"):
        ground_truth_people(coco, tmp_path)


def test_unknown_data_form():
    with pytest.raises(DataError, match="expected 'synthetic'"):
        parse_data("imagenet")
    with pytest.raises(DataError, match="does not exist"):
        parse_data("missing.json:images")


def test_person_without_labelled_keypoints_is_counted_not_trained(tmp_path):
    data = json.loads(ANN.read_text())
    for ann in data["annotations"]:
        ann["keypoints"] = [0] * 51
        ann["num_keypoints"] = 0
    (tmp_path / "ann.json").write_text(json.dumps(data))
    people, skipped = ground_truth_people(load_coco(tmp_path / "ann.json"), MINI)
    assert people == [] and skipped.counts["persons with no labelled keypoint"] == 14


def test_taylor_decoding_finds_the_subpixel_centre_of_a_gaussian():
    from pose.decode import decode_peaks

    joints = np.array([[10.3, 12.6], [5.8, 20.45], [0.0, 0.0]])
    heatmaps, _ = gaussian_heatmaps(joints, np.array([2, 2, 2]), (24, 32), sigma=1.5)
    taylor, _ = decode_peaks(heatmaps[None], "taylor")
    quarter, _ = decode_peaks(heatmaps[None], "quarter")
    assert np.abs(taylor[0, :2] - joints[:2]).max() < 0.01  # exact for a Gaussian
    assert np.abs(quarter[0, :2] - joints[:2]).max() > 0.04  # the quarter offset only gets within 0.25 px
    assert np.allclose(taylor[0, 2], [0, 0])  # a peak on the border keeps its integer position
    with pytest.raises(ValueError, match="unknown decoding"):
        decode_peaks(heatmaps[None], "dark")


def test_absolute_data_for_trials_in_another_working_directory(monkeypatch, tmp_path):
    # Ray Tune runs a trial in its own folder, so a relative --data must be made absolute before it is handed on.
    monkeypatch.chdir(tmp_path)
    assert absolute_data("synthetic") == "synthetic"
    assert absolute_data("ann/k.json:img") == f"{tmp_path / 'ann/k.json'}:{tmp_path / 'img'}"
    assert absolute_data("coco") == str(tmp_path / "coco")
