"""Image checks and re-encoding: type from magic bytes, a pixel cap, three sizes, no metadata at all.

Everything here is blocking CPU work; callers run `render` in a worker thread under a limiter.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageCms, ImageOps, features

MAX_PIXELS = 40_000_000
# name → longest side in pixels; never upscaled.
SIZES: dict[str, int] = {"thumb": 320, "medium": 800, "large": 1600}
OUTPUT_FORMAT = "WEBP"
OUTPUT_EXTENSION = "webp"
OUTPUT_CONTENT_TYPE = "image/webp"
OUTPUT_QUALITY = 82

_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}


class ImageRejected(Exception):
    """The bytes are a supported type but not a usable image (undecodable, too many pixels, a bomb)."""


def heic_supported() -> bool:
    """Only when a HEIF plugin (e.g. pillow-heif) has registered itself with Pillow."""
    return ".heic" in Image.registered_extensions()


def sniff(data: bytes) -> str | None:
    """The Pillow format name the bytes really are, from their magic numbers; None when unsupported."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS and heic_supported():
        return Image.registered_extensions()[".heic"]
    return None


@dataclass(frozen=True)
class Rendition:
    name: str
    data: bytes
    width: int
    height: int


@dataclass(frozen=True)
class Rendered:
    width: int
    height: int
    renditions: list[Rendition]


def render(data: bytes, fmt: str) -> Rendered:
    """Decode, orient, and re-encode into every size. Raises ImageRejected for anything unusable."""
    try:
        pixels = _decode(data, fmt)
    except ImageRejected:
        raise
    except Exception as exc:  # Pillow raises many types for hostile input; none of them may become a 500
        raise ImageRejected(type(exc).__name__) from exc
    renditions = []
    source = pixels
    # Largest first, each size from the previous one: cheaper than resizing the original three times.
    for name, longest in sorted(SIZES.items(), key=lambda item: -item[1]):
        source = _fit(source, longest)
        buffer = io.BytesIO()
        source.save(buffer, OUTPUT_FORMAT, quality=OUTPUT_QUALITY, method=4)
        renditions.append(Rendition(name, buffer.getvalue(), source.width, source.height))
    return Rendered(width=pixels.width, height=pixels.height, renditions=renditions)


def _decode(data: bytes, fmt: str) -> Image.Image:
    with Image.open(io.BytesIO(data), formats=[fmt]) as img:
        width, height = img.size  # from the header, before any pixel is decoded
        if width < 1 or height < 1 or width * height > MAX_PIXELS:
            raise ImageRejected("too_many_pixels")
        if fmt == "JPEG":
            # Let libjpeg decode at a reduced scale when the largest size needs fewer pixels.
            scale = SIZES["large"] / max(width, height)
            if scale < 1:
                img.draft(None, (max(1, int(width * scale)), max(1, int(height * scale))))
        img.load()
        try:
            oriented = ImageOps.exif_transpose(img)
        except Exception:  # a broken EXIF block is no reason to refuse the photo; keep it as stored
            oriented = img
        rgb = _to_srgb(oriented)
        # A fresh image receives only the pixels: no EXIF, GPS, XMP, ICC profile or comment can follow.
        clean = Image.new("RGB", rgb.size)
        clean.paste(rgb)
    return clean


def _to_srgb(img: Image.Image) -> Image.Image:
    icc = img.info.get("icc_profile")
    if img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        img = flat
    elif img.mode != "RGB":
        img = img.convert("RGB")
    if icc and features.check("littlecms2"):
        # Convert wide-gamut photos (Display P3 from phones) to sRGB, since the profile is not kept.
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(img, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is not None:
                img = converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # an unusable embedded profile: keep the pixels as they are
    return img


def _fit(img: Image.Image, longest: int) -> Image.Image:
    width, height = img.size
    if max(width, height) <= longest:
        return img
    scale = longest / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
