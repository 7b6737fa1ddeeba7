"""Real image files for photo tests, made with Pillow: metadata-laden, rotated, hostile."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import ExifTags, Image, ImageCms, ImageDraw

SECRET_COMMENT = b"kindred-secret-comment"
SECRET_XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">kindred-secret-xmp</x:xmpmeta>'
GPS = {1: "N", 2: (52.0, 22.0, 1.5), 3: "E", 4: (4.0, 53.0, 2.0)}


def _picture(size: tuple[int, int]) -> Image.Image:
    img = Image.new("RGB", size, (40, 120, 200))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, size[0] // 2, size[1] // 2), fill=(230, 180, 30))
    draw.ellipse((size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1] * 3 // 4), fill=(200, 30, 60))
    return img


def jpeg_with_metadata(size: tuple[int, int] = (2400, 1800)) -> bytes:
    """EXIF (camera, GPS position), an XMP packet, a comment and an ICC profile: all must disappear."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "KindredCam"
    exif[ExifTags.Base.Model] = "SecretModel 9"
    exif[ExifTags.Base.Orientation] = 1
    exif[ExifTags.IFD.GPSInfo] = GPS
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    _picture(size).save(buffer, "JPEG", exif=exif, comment=SECRET_COMMENT, xmp=SECRET_XMP, icc_profile=icc)
    data = buffer.getvalue()
    assert b"SecretModel" in data and SECRET_COMMENT in data and b"kindred-secret-xmp" in data
    return data


def rotated_jpeg() -> bytes:
    """Stored 400 x 200 with its left half red; EXIF orientation 6 shows it 200 x 400, red on top."""
    img = Image.new("RGB", (400, 200), (0, 0, 255))
    ImageDraw.Draw(img).rectangle((0, 0, 199, 199), fill=(255, 0, 0))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", exif=exif, quality=95)
    return buffer.getvalue()


def png(size: tuple[int, int] = (1000, 500), *, alpha: bool = False) -> bytes:
    img = _picture(size).convert("RGBA") if alpha else _picture(size)
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def webp(size: tuple[int, int] = (300, 200)) -> bytes:
    buffer = io.BytesIO()
    _picture(size).save(buffer, "WEBP", quality=90)
    return buffer.getvalue()


def gif() -> bytes:
    buffer = io.BytesIO()
    _picture((100, 80)).save(buffer, "GIF")
    return buffer.getvalue()


def small_jpeg(colour: tuple[int, int, int] = (10, 200, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, "JPEG")
    return buffer.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few hundred bytes claiming 10 gigapixels: decoding it would exhaust memory."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png_over_pixel_cap() -> bytes:
    """A real, fully decodable 8000 x 6000 (48 MP) PNG that compresses to a few kilobytes."""
    buffer = io.BytesIO()
    Image.new("1", (8000, 6000), 0).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    data = jpeg_with_metadata((800, 600))
    return data[: len(data) // 3]


def webp_chunks(data: bytes) -> list[bytes]:
    """The chunk types of a RIFF/WebP file (metadata would be EXIF, XMP or ICCP chunks)."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    chunks, offset = [], 12
    while offset + 8 <= len(data):
        kind = data[offset : offset + 4]
        (size,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        chunks.append(kind)
        offset += 8 + size + (size & 1)
    return chunks
