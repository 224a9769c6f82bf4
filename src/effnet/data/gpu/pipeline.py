"""The GPU input pipeline: workers read files (or render images), the training device decodes and augments.

`--input-pipeline gpu` trades the CPU training transform (effnet.data.transforms.train_transform, per image in
DataLoader workers) for `BatchTrainTransform` on whole batches on the training device: decode, RandomResizedCrop,
flip, the reference RandAugment / AutoAugment, normalization and random erasing, with the CPU path's
distributions. The code is device-agnostic: on a CPU machine it runs the same ops on CPU tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2  # type: ignore[import-untyped]

from effnet.data.folder import ImageFolderDataset
from effnet.data.gpu.crop import center_crops, normalize, random_hflip, random_resized_crop, squash_resizes
from effnet.data.gpu.decode import collate_images, decode_batch, pil_to_uint8
from effnet.data.gpu.policy import BatchedAutoAugment, BatchedRandAugment
from effnet.data.transforms import AUGMENTS, TorchvisionRandAugment
from effnet.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, interpolation_mode

INPUT_PIPELINES = ("auto", "cpu", "gpu")


def resolve_input_pipeline(choice: str, device: torch.device) -> str:
    """The pipeline ("cpu" or "gpu") for a `--input-pipeline` choice: auto is gpu on CUDA, cpu elsewhere."""
    if choice not in INPUT_PIPELINES:
        raise ValueError(f"input_pipeline must be one of {', '.join(INPUT_PIPELINES)}, got {choice!r}")
    if choice == "auto":
        return "gpu" if device.type == "cuda" else "cpu"
    return choice


def gpu_input_pipeline(
    choice: str, device: torch.device, log: Callable[[str], None] = lambda line: None, *, seed: int = 0, rank: int = 0
) -> GpuInputPipeline | None:
    """The GPU input pipeline when `choice` resolves to gpu on `device` (None: the CPU transforms in workers)."""
    if resolve_input_pipeline(choice, device) == "cpu":
        return None
    decoder = "nvJPEG" if device.type == "cuda" else "libjpeg-turbo, no CUDA here"
    log(f"input pipeline gpu: workers read files; batches are decoded ({decoder}), cropped and augmented on {device}")
    return GpuInputPipeline(device, seed=seed, rank=rank)


@dataclass(frozen=True)
class BatchTrainTransform:
    """`train_transform` for a batch on the training device: decoded images in, normalized float32 out."""

    size: int
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    scale: tuple[float, float] = (0.08, 1.0)
    hflip: float = 0.5
    augment: str | None = "randaugment"
    magnitude: float = 10
    num_ops: int = 2
    re_prob: float = 0.0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {self.size}")
        if self.augment is not None and self.augment != "none" and self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, 'none' or None, got {self.augment!r}")
        if not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ValueError(f"scale must be (min, max) area fractions with 0 < min <= max <= 1, got {self.scale}")
        interpolation_mode(self.interpolation)  # raises with the valid names

    def augmenter(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The policy on a uint8 batch (None: no policy)."""
        if self.augment == "randaugment" and self.num_ops > 0:
            return BatchedRandAugment(self.num_ops, self.magnitude)
        if self.augment == "autoaugment":
            return BatchedAutoAugment()
        # torchvision's tensor affine has no bicubic: its ops use bilinear there (PIL on the CPU path: bicubic).
        mode = interpolation_mode("bilinear" if self.interpolation == "bicubic" else self.interpolation)
        if self.augment == "randaugment_tv" and self.num_ops > 0:
            return _each(TorchvisionRandAugment(self.num_ops, int(round(self.magnitude)), interpolation=mode))
        if self.augment == "autoaugment_tv":
            return _each(v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET, interpolation=mode))
        return None

    def __call__(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """uint8 [3, H, W] images (any sizes, one device) -> float32 [N, 3, size, size] on that device."""
        batch = random_resized_crop(images, self.size, self.scale, self.interpolation)
        batch = random_hflip(batch, self.hflip)
        augmenter = self.augmenter()
        if augmenter is not None:
            batch = augmenter(batch)
        out = normalize(batch, self.mean, self.std)
        if self.re_prob > 0:
            out = _each(v2.RandomErasing(p=self.re_prob, value="random"))(out)
        return out


@dataclass(frozen=True)
class BatchEvalTransform:
    """A model's eval preprocessing (`preprocess_transform`) for a batch on the device: resize, centre crop (or
    the whole image squashed), normalize."""

    preprocess: Preprocess

    def __call__(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """uint8 [3, H, W] images (any sizes, one device) -> float32 [N, 3, S, S] on that device."""
        pre = self.preprocess
        if pre.resize_mode == "squash":
            batch = squash_resizes(images, pre.input_size, pre.interpolation)
        else:
            batch = center_crops(images, pre.input_size, pre.crop_pct, pre.interpolation)
        return normalize(batch, pre.mean, pre.std)


def _each(transform: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A per-image transform applied image by image (so each image draws its own parameters)."""
    return lambda batch: torch.stack([transform(image) for image in batch])


class GpuInputPipeline:
    """What a run needs for `--input-pipeline gpu`: the worker side (read, or render to uint8), the collate, and
    the batch transform on `device`."""

    def __init__(self, device: torch.device, *, seed: int = 0, rank: int = 0) -> None:
        self.device = device
        self.seed, self.rank = seed, rank

    def prepare_dataset(self, dataset: Dataset) -> Callable[[Any], Any] | None:
        """Switch an image folder to sending file bytes; the worker transform to set on the dataset."""
        if isinstance(dataset, ImageFolderDataset):
            dataset.encoded = True
            return None
        return pil_to_uint8

    @staticmethod
    def collate(batch: list[tuple[Any, int]]) -> tuple[list[Any], torch.Tensor]:
        """Images stay a list (sizes differ until they are cropped)."""
        return collate_images(batch)

    def batch(
        self,
        transform: Callable[[list[torch.Tensor]], torch.Tensor],
        items: list[Any],
        targets: torch.Tensor,
        position: tuple[int, int] = (0, 0),
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode a collated batch on the device and run `transform` (BatchTrainTransform / BatchEvalTransform) on
        it; images that cannot be decoded are dropped.

        The augmentation is drawn from a generator seeded by (seed, rank, epoch, step): a resumed run redraws
        exactly what it would have drawn, processes draw independently, and torch's global generators (dropout,
        mixup) are left as they were, as SeededDataset does for the CPU path.
        """
        decoded = decode_batch(items, self.device)
        keep = [index for index, image in enumerate(decoded) if image is not None]
        if not keep:
            raise RuntimeError(f"none of the {len(items)} images of a batch could be decoded")
        images = [decoded[index] for index in keep]
        assert all(image is not None for image in images)
        targets = targets[torch.tensor(keep)] if len(keep) < len(items) else targets
        forked = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=forked):
            key = ((self.seed * 1_000_003 + self.rank) * 10_007 + position[0]) * 10_000_019 + position[1]
            torch.manual_seed(key % 2**63)  # any seed: manual_seed takes at most 64 bits
            images = transform(images)  # type: ignore[arg-type]
        return images, targets.to(self.device, non_blocking=True)
