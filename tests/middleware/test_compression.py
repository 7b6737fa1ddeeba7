"""Compression: zstd, brotli or gzip by Accept-Encoding for compressible bodies of 1 KiB and more."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import Response


@pytest.mark.parametrize("encoding", ["br", "gzip", "zstd"])
async def test_large_json_is_compressed_with_what_the_client_accepts(client: httpx.AsyncClient, encoding: str) -> None:
    plain = await client.get("/openapi.json", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    packed = await client.get("/openapi.json", headers={"Accept-Encoding": encoding})
    assert packed.headers["content-encoding"] == encoding
    assert "accept-encoding" in packed.headers["vary"].lower()
    assert int(packed.headers["content-length"]) < len(plain.content) / 3
    assert packed.json() == plain.json()  # httpx decoded it: the same document


async def test_small_responses_are_not_compressed(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"Accept-Encoding": "br, gzip"})
    assert len(response.content) < 1024
    assert "content-encoding" not in response.headers


async def test_images_and_other_compressed_types_are_sent_as_they_are(app: FastAPI, client: httpx.AsyncClient) -> None:
    async def image() -> Response:
        return Response(b"RIFF" + b"\0" * 8188, media_type="image/webp")

    async def archive() -> Response:
        return Response(b"PK" + b"\0" * 8190, media_type="application/zip")

    app.add_api_route("/api/v1/test-image", image)
    app.add_api_route("/api/v1/test-archive", archive)
    for path in ("/api/v1/test-image", "/api/v1/test-archive"):
        response = await client.get(path, headers={"Accept-Encoding": "br, gzip, zstd"})
        assert response.status_code == 200
        assert "content-encoding" not in response.headers, path
        assert len(response.content) == 8192


async def test_security_headers_survive_compression(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "x-request-id" in response.headers
