"""Turning uploaded bytes into RGB images safely: content type, size, pixel count and decoding all checked, every
failure a client error with a message that says what was wrong."""

from __future__ import annotations

import base64
import binascii
import io

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


def decode_image(data: bytes, filename: str, max_pixels: int) -> Image.Image:
    """The upload as an RGB image; UploadError (400 or 413) for empty, unknown, oversized, too elongated or corrupt
    files. Size and shape are checked from the header, before any pixel is decompressed."""
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
