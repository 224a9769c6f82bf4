"""Turning uploaded bytes into RGB images safely: content type, size, pixel count and decoding all checked, every
failure a client error with a message that says what was wrong."""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import os
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from PIL import Image
from pydantic import ValidationError

from effnet.data.folder import load_rgb
from effnet.serve.schemas import PredictInstances

# Formats a browser or camera produces. Restricting PIL to these also keeps it away from decoders that call out to
# other programs (EPS runs Ghostscript).
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "PPM", "MPO")
_GENERIC_TYPES = ("application/octet-stream", "")
# Longer side over shorter side. Preprocessing scales the shorter side to the model's size, so a 1 x 40M-pixel strip
# (within the pixel limit) would become 256 x 10G pixels; panoramas and receipts stay far below 64:1.
MAX_ASPECT = 64
T = TypeVar("T")
JSON_SHAPE = 'send {"instances": [{"image_b64": "<base64 of the image file>"}]}'


class UploadError(ValueError):
    """A request the server refuses: `status` is the HTTP code (4xx), the message says why and what to send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_content_type(content_type: str | None, filename: str) -> None:
    """415 unless the part is declared as an image (or untyped binary, which is then decoded to find out)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in _GENERIC_TYPES or kind.startswith("image/"):
        return
    raise UploadError(
        415, f"{filename}: content type {kind!r} is not an image; send image/jpeg, image/png, image/webp, ..."
    )


# Pillow allocates an image in blocks of 16 MB, which glibc serves from per-thread heaps that keep the memory after
# the image is freed: 8 clients sending 6000 x 6000 PNGs at once left a worker at 3.7 GB resident. Blocks of 64 MB
# sit above glibc's largest mmap threshold (32 MB), so large images go back to the system when freed (1.7 GB peak,
# 1.0 GB after, same run); images under 64 MB are allocated as before.
LARGE_IMAGE_BLOCK_BYTES = 64 * 1024 * 1024


def return_large_images_to_the_system() -> None:
    """Make Pillow allocate large images in blocks the allocator hands back when freed (a server process's
    setting; PILLOW_BLOCK_SIZE in the environment wins)."""
    if "PILLOW_BLOCK_SIZE" not in os.environ:
        Image.core.set_block_size(LARGE_IMAGE_BLOCK_BYTES)


class PixelBudget:
    """Pixels decoded at once in one process, at most `total` (an image alone may take it all): N clients sending
    the largest images together cost `total` x 3 bytes, not N images' worth (the thread pool runs 40 at once)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self.changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Wait until `pixels` fit beside what others hold, hold them for the block, then hand them back."""
        with self.changed:
            self.changed.wait_for(lambda: self.used == 0 or self.used + pixels <= self.total)
            self.used += pixels
        try:
            yield
        finally:
            with self.changed:
                self.used -= pixels
                self.changed.notify_all()


def decode_within(
    budget: PixelBudget, data: bytes, filename: str, max_pixels: int, use: Callable[[Image.Image], T]
) -> T:
    """`use(image)` for the upload decoded as RGB, with its pixels held in `budget` from decoding until `use`
    returns (a model input or a thumbnail: the full-size image is garbage after); UploadError (400 or 413) for
    empty, unknown, oversized, too elongated or corrupt files, found from the header before any pixel is decoded."""
    width, height = _checked_size(data, filename, max_pixels)
    with budget.hold(width * height):
        return use(_decode(data, filename))


def _checked_size(data: bytes, filename: str, max_pixels: int) -> tuple[int, int]:
    """Width and height from the header, within the pixel limit and MAX_ASPECT; UploadError otherwise."""
    if not data:
        raise UploadError(400, f"{filename}: the file is empty")
    Image.init()  # registers every format plugin; opening with `formats=` looks them up without loading them
    try:
        # Opening reads only the header, so the pixel count is known before anything is decompressed.
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as header:
            width, height = header.size
    except Image.DecompressionBombError as err:
        raise UploadError(413, f"{filename}: refused as a decompression bomb ({err})") from err
    except Exception as err:  # UnidentifiedImageError, or whatever a plugin raises on a garbled header
        formats = ", ".join(f.lower() for f in IMAGE_FORMATS)
        raise UploadError(400, f"{filename}: not an image this server reads ({formats})") from err
    if width * height > max_pixels:
        raise UploadError(
            413,
            f"{filename}: {width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,} "
            "(decompression bomb?); send a smaller image",
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise UploadError(
            400, f"{filename}: {width}x{height} is longer than {MAX_ASPECT}:1; crop it to the part to classify"
        )
    return width, height


def _decode(data: bytes, filename: str) -> Image.Image:
    try:
        return load_rgb(io.BytesIO(data))  # type: ignore[arg-type]  # PIL opens file objects as well as paths
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, EOFError, struct.error ... for bad data
        raise UploadError(
            400, f"{filename}: cannot decode the image, the file is truncated or corrupt ({type(err).__name__}: {err})"
        ) from err


def _first_error(err: Exception) -> str:
    """ "where: what" of the first problem a Pydantic ValidationError found."""
    errors = getattr(err, "errors", lambda: [])()
    if not errors:
        return str(err)
    where = ".".join(str(part) for part in errors[0].get("loc", ())) or "body"
    return f"{where}: {errors[0].get('msg', 'invalid')}"


def decode_base64(text: str, label: str) -> bytes:
    """The bytes of a base64 string (a data URL's payload too; line breaks allowed); 400 when it is not base64."""
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise UploadError(
            400, f"{label}: not valid base64 ({err}); send the image file's bytes base64-encoded"
        ) from err


def parse_instances(body: bytes, max_images: int) -> list[tuple[str, bytes]]:
    """(name, image bytes) of a JSON /predict body {"instances": [{"image_b64": "..."}]}; 400 when malformed."""
    try:
        request = PredictInstances.model_validate_json(body)
    except ValidationError as err:
        raise UploadError(400, f"bad JSON body ({_first_error(err)}); {JSON_SHAPE}") from err
    if len(request.instances) > max_images:
        raise UploadError(400, f"{len(request.instances)} instances, over the limit of {max_images} per request")
    uploads = []
    for number, instance in enumerate(request.instances, 1):
        name = instance.name or f"instance {number}"
        uploads.append((name, decode_base64(instance.image_b64, name)))
    return uploads
