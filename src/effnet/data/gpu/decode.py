"""Images from workers as bytes or uint8 tensors, decoded in batches on the training device.

Workers only read files (`effnet.data.folder.EncodedImage`: bytes and EXIF orientation); the main process
decodes a whole batch with `torchvision.io.decode_jpeg(list, device="cuda")` (nvJPEG) on CUDA, with libjpeg-turbo
on the CPU otherwise. Files nvJPEG or torchvision cannot decode (CMYK, PNG, damaged) go through PIL as the CPU
path does (`effnet.data.folder.load_rgb`).
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg  # type: ignore[import-untyped]

from effnet.data.folder import EncodedImage, load_rgb

logger = logging.getLogger(__name__)

_JPEG_MAGIC = (0xFF, 0xD8, 0xFF)


def pil_to_uint8(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a uint8 tensor [3, H, W] (what workers send for rendered / array datasets)."""
    return torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1).contiguous()


def collate_images(batch: list[tuple[Any, int]]) -> tuple[list[Any], torch.Tensor]:
    """A DataLoader collate for images of different sizes: (list of images, labels [N])."""
    return [image for image, _ in batch], torch.tensor([int(label) for _, label in batch], dtype=torch.int64)


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation to [C, H, W] as PIL's ImageOps.exif_transpose does."""
    transforms = {
        2: lambda x: x.flip(-1),
        3: lambda x: x.flip(-1, -2),
        4: lambda x: x.flip(-2),
        5: lambda x: x.transpose(-1, -2),
        6: lambda x: torch.rot90(x, -1, dims=(-2, -1)),
        7: lambda x: x.transpose(-1, -2).flip(-1, -2),
        8: lambda x: torch.rot90(x, 1, dims=(-2, -1)),
    }
    return transforms[orientation](image).contiguous() if orientation in transforms else image


@contextmanager
def _quiet_deprecation() -> Iterator[None]:
    # torchvision 0.29 marks its decoders deprecated in favour of TorchCodec; they remain what decodes on nvJPEG.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*decoding and encoding capabilities", category=DeprecationWarning)
        yield


def _is_image(item: Any) -> bool:
    return isinstance(item, torch.Tensor) and item.dtype == torch.uint8 and item.ndim == 3


def _is_jpeg(data: torch.Tensor) -> bool:
    return data.numel() > 3 and tuple(data[:3].tolist()) == _JPEG_MAGIC


def _decode_pil(item: EncodedImage) -> torch.Tensor | None:
    """PIL's decode (load_rgb applies the EXIF orientation itself); None for a file PIL cannot read either."""
    try:
        return pil_to_uint8(load_rgb(io.BytesIO(item.data.numpy().tobytes())))
    except Exception as error:  # PIL raises many types for damaged files
        logger.warning("skipping an undecodable image in a batch (%s: %s)", type(error).__name__, error)
        return None


def decode_batch(items: list[Any], device: torch.device) -> list[torch.Tensor | None]:
    """uint8 [3, H, W] images on `device` from a batch of EncodedImage / uint8 tensors / PIL images (None where a
    file cannot be decoded)."""
    if all(_is_image(item) for item in items) and len({item.shape for item in items}) == 1:
        return list(torch.stack(items).to(device, non_blocking=True))  # rendered images of one size: one copy
    out: list[torch.Tensor | None] = [None] * len(items)
    jpegs: list[int] = []
    for index, item in enumerate(items):
        if isinstance(item, EncodedImage):
            if _is_jpeg(item.data):
                jpegs.append(index)
            else:
                image = _decode_pil(item)
                out[index] = None if image is None else image.to(device)
        elif isinstance(item, Image.Image):
            out[index] = pil_to_uint8(item).to(device, non_blocking=True)
        elif _is_image(item):
            out[index] = item.to(device, non_blocking=True)
        else:
            raise ValueError(
                f"the GPU input pipeline takes encoded files, PIL images or uint8 [3, H, W] tensors, "
                f"got {type(item).__name__}; use --input-pipeline cpu for this dataset"
            )
    if jpegs:
        for index, image in zip(jpegs, _decode_jpegs([items[i] for i in jpegs], device), strict=True):
            out[index] = image
    return out


def _decode_jpegs(items: list[EncodedImage], device: torch.device) -> list[torch.Tensor | None]:
    """Decode JPEGs together on `device` (nvJPEG on CUDA); when that fails, one by one, PIL for the bad ones."""
    target = device if device.type == "cuda" else torch.device("cpu")
    try:
        with _quiet_deprecation():
            decoded = decode_jpeg([item.data for item in items], mode=ImageReadMode.RGB, device=target)
        return [orient(image, item.orientation).to(device) for image, item in zip(decoded, items, strict=True)]
    except RuntimeError:  # one bad file fails the whole call
        pass
    out: list[torch.Tensor | None] = []
    for item in items:
        try:
            with _quiet_deprecation():
                image = decode_jpeg(item.data, mode=ImageReadMode.RGB)
            out.append(orient(image, item.orientation).to(device))
        except RuntimeError:
            fallback = _decode_pil(item)
            out.append(None if fallback is None else fallback.to(device))
    return out
