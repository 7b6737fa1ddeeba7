"""Photo fixtures: a private media folder per test, an upload helper, and a moto S3 server when installed."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.factories import Account
from tests.support.requirements import missing


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    return tmp_path / "media"


@pytest.fixture
def settings_overrides(media_dir: Path) -> dict[str, object]:
    return {"storage_path": media_dir}


def stored_files(media_dir: Path) -> list[str]:
    return sorted(p.name for p in media_dir.iterdir()) if media_dir.exists() else []


async def upload(
    client: httpx.AsyncClient,
    account: Account,
    data: bytes,
    *,
    filename: str = "photo.jpg",
    content_type: str = "image/jpeg",
) -> httpx.Response:
    return await client.post(
        "/api/v1/me/photos", headers=account.headers, files={"file": (filename, data, content_type)}
    )


async def upload_ok(client: httpx.AsyncClient, account: Account, data: bytes, **kwargs: Any) -> dict[str, Any]:
    response = await upload(client, account, data, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()


# ---------------------------------------------------------------------------------------------- S3


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3-compatible server in its own process on 127.0.0.1 and a free port."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        missing("moto[server] is not installed")
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    missing("moto server did not start")
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    """A fresh bucket per test, so tests can count its objects."""
    import uuid

    import boto3

    name = f"kindred-test-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=name)
    client.close()
    return name
