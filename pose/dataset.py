"""Top-down person crops with augmentation and heatmap targets; decoded images and eval crops are cached, each
cache within a byte limit (defaults in pose.loading)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from blocks.network import prepare_input
from pose.coco import DataError, Person
from pose.device import Device
from pose.geometry import UPPER_BODY, affine_matrix, apply_affine, box_to_center_scale, flip_permutation
from pose.loading import CROP_CACHE_BYTES, IMAGE_CACHE_BYTES
from pose.targets import default_sigma, gaussian_heatmaps

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255


@dataclass(frozen=True)
class Augment:
    """The published recipe's augmentation (flip 0.5, half-body 0.3, scale 0.25, rotation 30 with p 0.6)."""

    flip: float = 0.5
    half_body: float = 0.3
    scale: float = 0.25
    rotation: float = 30.0
    rotation_p: float = 0.6


NO_AUGMENT = Augment(0.0, 0.0, 0.0, 0.0, 0.0)
# For short trainings: no half-body crops and milder rotation. A model that sees a few thousand crops learns
# localisation sooner without them; the validation crops are never rotated or cut anyway.
SHORT_AUGMENT = Augment(half_body=0.0, rotation=10.0, rotation_p=0.5)
AUGMENTATIONS: dict[str, Augment] = {"published": Augment(), "short": SHORT_AUGMENT, "none": NO_AUGMENT}


class ImageCache:
    """Decoded RGB images kept in memory, least recently used dropped past `max_bytes`."""

    def __init__(self, max_bytes: int = IMAGE_CACHE_BYTES) -> None:
        self.max_bytes, self.bytes = max_bytes, 0
        self.images: OrderedDict[Path, Image.Image] = OrderedDict()

    def get(self, path: Path) -> Image.Image:
        if path in self.images:
            self.images.move_to_end(path)
            return self.images[path]
        try:
            with Image.open(path) as raw:
                image = raw.convert("RGB")
        except FileNotFoundError:
            raise DataError(f"image {path} does not exist") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"image {path} cannot be decoded ({exc})") from None
        self.images[path] = image
        self.bytes += image.width * image.height * 3
        while self.bytes > self.max_bytes and len(self.images) > 1:
            _, old = self.images.popitem(last=False)
            self.bytes -= old.width * old.height * 3
        return image


class CropCache:
    """Validation crops as uint8 pixels (a quarter of float32's bytes), kept while they fit in `max_bytes`; the
    rest are recomputed. Validation reads the persons in the same order every epoch, and for such a cyclic scan
    keeping the first crops that fit beats least-recently-used, which would evict each crop just before its reuse."""

    def __init__(self, max_bytes: int = CROP_CACHE_BYTES) -> None:
        self.max_bytes, self.bytes = max_bytes, 0
        self.crops: dict[int, np.ndarray] = {}

    def get(self, i: int) -> np.ndarray | None:
        return self.crops.get(i)

    def put(self, i: int, pixels: np.ndarray) -> None:
        if i not in self.crops and self.bytes + pixels.nbytes <= self.max_bytes:
            self.crops[i] = pixels
            self.bytes += pixels.nbytes


def crop(image: Image.Image, matrix: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """Warp with the forward 2x3 matrix into an (H, W, 3) uint8 crop (bilinear, black outside)."""
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    out = image.transform(
        (input_hw[1], input_hw[0]), Image.Transform.AFFINE, inverse.ravel().tolist(), resample=Image.Resampling.BILINEAR
    )
    return np.asarray(out)


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """An (H, W, 3) uint8 crop as a (3, H, W) uint8 tensor. Batches stay uint8 through the loader's queues, pinned
    memory and the copy to the GPU (a quarter of float32's bytes) and are normalised where the model runs
    (`model_input`)."""
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


@lru_cache(maxsize=8)
def _mean_std(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """MEAN and STD as (1, 3, 1, 1) tensors on `device`, copied there once."""
    return tuple(torch.from_numpy(v).to(device).view(1, 3, 1, 1) for v in (MEAN, STD))


def normalise(images: torch.Tensor) -> torch.Tensor:
    """A uint8 batch (N, 3, H, W) as float32 `(pixel - MEAN) / STD`, computed on the batch's device (the same
    float32 operations, so the same numbers, as normalising each crop with numpy on the CPU)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"normalise takes uint8 image batches (pose.dataset.to_tensor), got {images.dtype}")
    mean, std = _mean_std(images.device)
    return (images.float() - mean) / std


def model_input(images: torch.Tensor, device: Device) -> torch.Tensor:
    """A loader's uint8 batch as the model's input on `device`: copied as uint8 (asynchronously from pinned
    memory), normalised there and laid out as `prepare_for_training(model, device.fast)` expects."""
    return prepare_input(normalise(images.to(device.device, non_blocking=True)), device.fast)


class TopDownDataset(torch.utils.data.Dataset):
    """Person i, or (epoch, i) -> (image (3,H,W) uint8, heatmaps (J,h,w), weights (J,), i). Augmentation is seeded per
    (seed, epoch, i), so it does not matter which process computes a crop; a bare i uses `self.epoch`."""

    def __init__(
        self,
        people: list[Person],
        input_hw: tuple[int, int],
        train: bool,
        augment: Augment = Augment(),
        seed: int = 0,
        cache: ImageCache | None = None,
        sigma: float | None = None,
        crops: CropCache | None = None,
    ) -> None:
        self.people, self.input_hw, self.train = people, input_hw, train
        self.augment = augment if train else NO_AUGMENT
        self.seed, self.epoch = seed, 0
        self.cache = cache or ImageCache()
        self.heatmap_wh = (input_hw[1] // 4, input_hw[0] // 4)
        self.sigma = sigma or default_sigma(self.heatmap_wh)
        self.joints = len(people[0].keypoints) if people else 17
        self.flip_perm = flip_permutation(self.joints)
        self.crops = crops or CropCache()  # validation crops only

    def __len__(self) -> int:
        return len(self.people)

    def window(self, i: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, float, bool]:
        """Centre, size (pixels), rotation and flip of person i's crop (augmented when rng is given)."""
        person = self.people[i]
        aspect = self.input_hw[1] / self.input_hw[0]
        center, size = box_to_center_scale(person.box, aspect)
        rotation, flip = 0.0, False
        if rng is not None:
            a = self.augment
            visible = person.keypoints[:, 2] > 0
            if rng.random() < a.half_body and visible.sum() >= 8:
                center, size = self._half_body(person.keypoints, visible, aspect, rng, center, size)
            size = size * np.clip(rng.normal(1.0, a.scale), 1 - a.scale, 1 + a.scale)
            if rng.random() < a.rotation_p:
                rotation = float(np.clip(rng.normal(0, a.rotation), -2 * a.rotation, 2 * a.rotation))
            flip = bool(rng.random() < a.flip)
        return center, size, rotation, flip

    def _half_body(self, keypoints, visible, aspect, rng, center, size):
        upper = np.zeros(len(keypoints), bool)
        upper[[j for j in UPPER_BODY if j < len(keypoints)]] = True
        chosen = visible & (upper if rng.random() < 0.5 else ~upper)
        if chosen.sum() < 2:
            chosen = visible & (~upper if chosen is upper else upper)
        if chosen.sum() < 2:
            return center, size
        points = keypoints[chosen, :2]
        lo, hi = points.min(0), points.max(0)
        box = (lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])
        return box_to_center_scale(box, aspect, padding=1.5)

    def __getitem__(self, item: int | tuple[int, int]):
        epoch, i = item if isinstance(item, tuple) else (self.epoch, item)
        person = self.people[i]
        rng = np.random.default_rng([self.seed, epoch, i]) if self.train else None
        center, size, rotation, flip = self.window(i, rng)
        matrix = affine_matrix(center, size, rotation, (self.input_hw[1], self.input_hw[0]))
        pixels = None if self.train else self.crops.get(i)
        if pixels is None:
            pixels = crop(self.cache.get(person.image), matrix, self.input_hw)
            if flip:
                pixels = pixels[:, ::-1]
            if not self.train:
                self.crops.put(i, pixels)
        image = to_tensor(pixels)
        joints = apply_affine(person.keypoints[:, :2].astype(np.float64), matrix)
        visible = person.keypoints[:, 2].copy()
        if flip:
            joints[:, 0] = self.input_hw[1] - 1 - joints[:, 0]
            joints, visible = joints[self.flip_perm], visible[self.flip_perm]
        heatmaps, weights = gaussian_heatmaps(joints / 4, visible, self.heatmap_wh, self.sigma)
        return image, torch.from_numpy(heatmaps), torch.from_numpy(weights), i
