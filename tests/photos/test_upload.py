"""POST /api/v1/me/photos: type from bytes, size and pixel caps, three clean sizes, 6-photo limit."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from kindred.kit.email import MemoryEmailBackend
from kindred.photos.repository import PhotoRepository
from kindred.photos.service import MAX_FILE_BYTES
from tests.photos import images
from tests.photos.conftest import stored_files, upload, upload_ok
from tests.support.assertions import assert_error
from tests.support.factories import verified_account

SIZES = ("thumb", "medium", "large")
FORBIDDEN_INFO = {"exif", "xmp", "XML:com.adobe.xmp", "comment", "icc_profile", "photoshop", "iptc"}


def _stored(media_dir: Path, photo_urls: dict[str, str]) -> dict[str, bytes]:
    """The stored bytes of each size, found through the key in the photo's signed URL."""
    out = {}
    for size in SIZES:
        key = photo_urls[size].split("?", 1)[0].removeprefix("/media/")
        out[size] = (media_dir / key).read_bytes()
    return out


def assert_no_metadata(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        assert not img.getexif(), dict(img.getexif())
        assert not FORBIDDEN_INFO & set(img.info), img.info.keys()
    assert not {b"EXIF", b"XMP ", b"ICCP"} & set(images.webp_chunks(data))
    for needle in (b"Exif", b"KindredCam", b"SecretModel", images.SECRET_COMMENT, b"kindred-secret-xmp", b"xmpmeta"):
        assert needle not in data


async def test_jpeg_is_stored_in_three_sizes_without_any_metadata(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, media_dir: Path
) -> None:
    account = await verified_account(client, mail)
    photo = await upload_ok(client, account, images.jpeg_with_metadata((2400, 1800)))

    assert photo["position"] == 0 and photo["status"] == "approved"
    assert set(photo["urls"]) == set(SIZES)
    stored = _stored(media_dir, photo["urls"])
    expected = {"thumb": (320, 240), "medium": (800, 600), "large": (1600, 1200)}
    for size, data in stored.items():
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == "WEBP"
            assert img.size == expected[size]
        assert_no_metadata(data)
    assert len(stored_files(media_dir)) == 3


async def test_exif_gps_is_absent_from_every_stored_size(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, media_dir: Path
) -> None:
    account = await verified_account(client, mail)
    photo = await upload_ok(client, account, images.jpeg_with_metadata((1200, 900)))
    for data in _stored(media_dir, photo["urls"]).values():
        with Image.open(io.BytesIO(data)) as img:
            assert not img.getexif().get_ifd(0x8825)  # GPSInfo
        assert b"GPS" not in data


async def test_small_images_are_never_upscaled(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, media_dir: Path
) -> None:
    account = await verified_account(client, mail)
    photo = await upload_ok(client, account, images.webp((300, 200)), filename="p.webp", content_type="image/webp")
    for data in _stored(media_dir, photo["urls"]).values():
        with Image.open(io.BytesIO(data)) as img:
            assert img.size == (300, 200)


async def test_png_is_accepted_and_scaled_by_its_longest_side(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, media_dir: Path
) -> None:
    account = await verified_account(client, mail)
    photo = await upload_ok(client, account, images.png((1000, 500), alpha=True), filename="p.png")
    sizes = {}
    for size, data in _stored(media_dir, photo["urls"]).items():
        assert_no_metadata(data)
        with Image.open(io.BytesIO(data)) as img:
            sizes[size] = img.size
            assert img.mode == "RGB"
    assert sizes == {"thumb": (320, 160), "medium": (800, 400), "large": (1000, 500)}


async def test_exif_orientation_is_applied_before_the_metadata_is_dropped(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, media_dir: Path
) -> None:
    account = await verified_account(client, mail)
    photo = await upload_ok(client, account, images.rotated_jpeg())
    with Image.open(io.BytesIO(_stored(media_dir, photo["urls"])["large"])) as img:
        rgb = img.convert("RGB")
    assert rgb.size == (200, 400)  # shown upright: portrait
    top, bottom = rgb.getpixel((100, 50)), rgb.getpixel((100, 350))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60  # red on top, as the camera meant
    assert bottom[2] > 200 and bottom[0] < 60


async def test_type_comes_from_the_bytes_not_the_name_or_header(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, media_dir: Path
) -> None:
    account = await verified_account(client, mail)
    text = b"just some text pretending to be a photo\n" * 20
    assert_error(await upload(client, account, text, filename="me.jpg"), 415, "unsupported_media_type")
    assert_error(
        await upload(client, account, images.gif(), filename="me.jpg", content_type="image/jpeg"),
        415,
        "unsupported_media_type",
    )
    # And a real PNG sent with a wrong name and header is still a PNG.
    await upload_ok(client, account, images.png((100, 50)), filename="x.txt", content_type="text/plain")
    assert len(stored_files(media_dir)) == 3


async def test_file_of_10_mb_plus_one_byte_is_413(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, media_dir: Path
) -> None:
    account = await verified_account(client, mail)
    body = images.small_jpeg() + b"\x00" * (MAX_FILE_BYTES + 1 - len(images.small_jpeg()))
    assert len(body) == MAX_FILE_BYTES + 1
    assert_error(await upload(client, account, body), 413, "file_too_large")
    assert stored_files(media_dir) == []


async def test_body_declared_far_over_the_cap_is_413_before_reading(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    response = await upload(client, account, b"\xff\xd8\xff" + b"\x00" * (12 * 1024 * 1024))
    assert_error(response, 413, "file_too_large")


async def test_streamed_body_without_length_is_cut_off_at_the_cap(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        yield b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff"
        for _ in range(64):  # 64 MB offered
            sent += 1
            yield b"\x00" * (1024 * 1024)
        yield b"\r\n--b--\r\n"

    headers = {**account.headers, "Content-Type": "multipart/form-data; boundary=b"}
    response = await client.post("/api/v1/me/photos", headers=headers, content=body())
    assert_error(response, 413, "file_too_large")
    assert sent <= 12  # the server stopped reading just past 10 MB


@pytest.mark.parametrize(
    "make",
    [images.png_header_bomb, images.png_over_pixel_cap, images.truncated_jpeg],
    ids=["decompression-bomb-header", "48-megapixels", "truncated"],
)
async def test_unusable_images_are_422_never_500(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, media_dir: Path, make: object
) -> None:
    account = await verified_account(client, mail)
    assert callable(make)
    response = await upload(client, account, make(), filename="x.png", content_type="image/png")
    assert_error(response, 422, "image_invalid")
    assert stored_files(media_dir) == []


async def test_upload_needs_authentication(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/me/photos", files={"file": ("a.jpg", images.small_jpeg(), "image/jpeg")})
    assert_error(response, 401, "not_authenticated")


async def test_missing_file_field_is_422(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    response = await client.post("/api/v1/me/photos", headers=account.headers, files={"other": ("a", b"x")})
    assert_error(response, 422, "validation_error")


async def test_seventh_photo_is_409_and_leaves_no_files(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, media_dir: Path
) -> None:
    account = await verified_account(client, mail)
    positions = [(await upload_ok(client, account, images.small_jpeg()))["position"] for _ in range(6)]
    assert positions == [0, 1, 2, 3, 4, 5]
    assert_error(await upload(client, account, images.small_jpeg()), 409, "photo_limit_reached")
    assert len(stored_files(media_dir)) == 18


async def test_concurrent_uploads_for_the_last_slot_give_one_201_and_one_409(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, media_dir: Path
) -> None:
    account = await verified_account(client, mail)
    for _ in range(5):
        await upload_ok(client, account, images.small_jpeg())
    first, second = await asyncio.gather(
        upload(client, account, images.small_jpeg((1, 2, 3))), upload(client, account, images.small_jpeg((4, 5, 6)))
    )
    assert sorted([first.status_code, second.status_code]) == [201, 409], (first.text, second.text)
    loser = first if first.status_code == 409 else second
    assert_error(loser, 409, "photo_limit_reached")
    assert len(stored_files(media_dir)) == 18  # the loser's files were removed


async def test_files_are_removed_when_the_transaction_fails(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, media_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await verified_account(client, mail)

    async def failing_add(self: PhotoRepository, photo: object) -> None:
        raise RuntimeError("database write failed")

    monkeypatch.setattr(PhotoRepository, "add", failing_add)
    response = await upload(client, account, images.jpeg_with_metadata((640, 480)))
    assert response.status_code == 500
    assert stored_files(media_dir) == []


class TestPreModeration:
    @pytest.fixture
    def settings_overrides(self, media_dir: Path) -> dict[str, object]:
        return {"storage_path": media_dir, "photo_moderation": "pre"}

    async def test_photos_are_pending_until_approved(self, client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
        account = await verified_account(client, mail)
        photo = await upload_ok(client, account, images.small_jpeg())
        assert photo["status"] == "pending"
