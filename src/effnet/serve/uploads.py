"""Turning uploaded bytes into RGB images safely: content type, size, pixel count and decoding all checked, every
failure a client error with a message that says what was wrong."""

from __future__ import annotations

import io

from PIL import Image

from effnet.data.folder import load_rgb

# Formats a browser or camera produces. Restricting PIL to these also keeps it away from decoders that call out to
# other programs (EPS runs Ghostscript).
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "PPM", "MPO")
_GENERIC_TYPES = ("application/octet-stream", "")


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
    """The upload as an RGB image; UploadError (400 or 413) for empty, unknown, oversized or corrupt files."""
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
    try:
        return load_rgb(io.BytesIO(data))  # type: ignore[arg-type]  # PIL opens file objects as well as paths
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, EOFError, struct.error ... for bad data
        raise UploadError(
            400, f"{filename}: cannot decode the image, the file is truncated or corrupt ({type(err).__name__}: {err})"
        ) from err
