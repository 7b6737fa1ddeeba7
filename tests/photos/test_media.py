"""GET /media/{key}: signed URLs valid 24 h, expiry on the hour, cacheable exactly until it."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from kindred.kit import clock, media
from kindred.kit.email import MemoryEmailBackend
from tests.photos import images
from tests.photos.conftest import upload_ok
from tests.support.assertions import assert_error
from tests.support.factories import verified_account

FROZEN = datetime(2026, 3, 1, 10, 20, 30, tzinfo=UTC)


def _exp(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["exp"][0])


async def _photo(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> dict[str, str]:
    account = await verified_account(client, mail)
    photo = await upload_ok(client, account, images.jpeg_with_metadata((900, 600)))
    return photo["urls"]


async def test_uploaded_urls_expire_on_the_hour_24_to_25_hours_ahead(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    before = int(clock.now().timestamp())
    urls = await _photo(client, mail)
    for url in urls.values():
        exp = _exp(url)
        assert exp % 3600 == 0
        assert before + 24 * 3600 <= exp <= before + 25 * 3600 + 5


async def test_signed_url_serves_the_image_with_cache_control_until_expiry(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = await _photo(client, mail)
    key = urls["medium"].split("?", 1)[0].removeprefix("/media/")
    # /media needs no sign-in, so the clock can move freely: sign and fetch at a fixed instant.
    monkeypatch.setattr(clock, "now", lambda: FROZEN)
    url = app.state.media_signer.sign(key, FROZEN)
    assert re.fullmatch(r"/media/[A-Za-z0-9_-]+_medium\.webp\?exp=\d+&sig=[A-Za-z0-9_-]+", url)
    exp = _exp(url)
    assert exp == int(datetime(2026, 3, 2, 11, 0, tzinfo=UTC).timestamp())

    response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/webp"
    assert response.headers["cache-control"] == f"public, max-age={exp - int(FROZEN.timestamp())}, immutable"
    assert response.headers["cache-control"] == "public, max-age=88770, immutable"
    assert response.headers["x-content-type-options"] == "nosniff"
    with Image.open(io.BytesIO(response.content)) as img:
        assert img.size == (800, 533)


async def test_urls_are_stable_within_the_hour(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    signer = app.state.media_signer
    assert signer.sign("k_thumb.webp", FROZEN) == signer.sign("k_thumb.webp", FROZEN.replace(minute=59))
    assert signer.sign("k_thumb.webp", FROZEN) != signer.sign("k_thumb.webp", FROZEN + timedelta(hours=1))


def test_expiry_is_24_hours_rounded_up_to_the_hour() -> None:
    on_the_hour = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert media.expiry(on_the_hour) == int((on_the_hour + timedelta(hours=24)).timestamp())
    assert media.expiry(on_the_hour + timedelta(seconds=1)) == int((on_the_hour + timedelta(hours=25)).timestamp())


async def test_tampered_missing_or_foreign_signatures_are_403(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    urls = await _photo(client, mail)
    path, query = urls["large"].split("?", 1)
    params = parse_qs(query)
    exp, sig = params["exp"][0], params["sig"][0]
    other_path = urls["thumb"].split("?", 1)[0]
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    for bad in (
        f"{path}?exp={exp}&sig={flipped}",
        f"{path}?exp={int(exp) + 3600}&sig={sig}",
        f"{path}?exp={exp}",
        f"{path}?sig={sig}",
        path,
        f"{path}?exp=soon&sig={sig}",
        f"{other_path}?exp={exp}&sig={sig}",  # a signature is for one key only
    ):
        assert_error(await client.get(bad), 403, "media_signature_invalid")


async def test_expired_url_is_403(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = await _photo(client, mail)
    assert (await client.get(urls["thumb"])).status_code == 200
    exp = _exp(urls["thumb"])
    monkeypatch.setattr(clock, "now", lambda: datetime.fromtimestamp(exp, UTC))
    assert_error(await client.get(urls["thumb"]), 403, "media_signature_invalid")


async def test_valid_signature_for_an_unknown_key_is_404(app: FastAPI, client: httpx.AsyncClient) -> None:
    url = app.state.media_signer.sign("doesnotexist_large.webp", clock.now())
    assert_error(await client.get(url), 404, "not_found")


async def test_signed_traversal_key_never_reaches_the_disk(app: FastAPI, client: httpx.AsyncClient) -> None:
    url = app.state.media_signer.sign("..%2Fsecrets", clock.now())
    response = await client.get(url)
    assert response.status_code in {403, 404}


def test_photo_and_media_routes_are_in_the_openapi_document(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    assert {"/media/{key}", "/api/v1/me/photos", "/api/v1/me/photos/order", "/api/v1/me/photos/{photo_id}"} <= set(
        paths
    )
    assert "multipart/form-data" in paths["/api/v1/me/photos"]["post"]["requestBody"]["content"]
