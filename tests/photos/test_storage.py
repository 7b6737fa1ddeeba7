"""The storage interface: the local folder and an S3-compatible bucket (moto's server) behave alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kindred.kit.email import MemoryEmailBackend
from kindred.kit.storage import InvalidKey, LocalStorage, S3Storage, Storage
from tests.photos import images
from tests.photos.conftest import upload_ok
from tests.support.assertions import assert_error
from tests.support.factories import verified_account

MOTO_CREDENTIALS = {"access_key": "testing", "secret_key": "testing"}


@pytest.fixture(params=["local", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "local":
        backend: Storage = LocalStorage(tmp_path / "store")
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        bucket = request.getfixturevalue("s3_bucket")
        backend = S3Storage(bucket, endpoint_url=endpoint, region="us-east-1", **MOTO_CREDENTIALS)
    yield backend
    await backend.close()


async def test_put_get_exists_delete_round_trip(storage: Storage) -> None:
    await storage.ping()
    assert await storage.get("abc_thumb.webp") is None
    assert not await storage.exists("abc_thumb.webp")
    await storage.put("abc_thumb.webp", b"first", "image/webp")
    await storage.put("abc_thumb.webp", b"second", "image/webp")  # overwrite
    await storage.put("abc_large.webp", b"large", "image/webp")
    assert await storage.get("abc_thumb.webp") == b"second"
    assert await storage.exists("abc_large.webp")
    await storage.delete("abc_thumb.webp", "abc_large.webp", "never_existed.webp")
    assert await storage.get("abc_thumb.webp") is None
    assert not await storage.exists("abc_large.webp")


@pytest.mark.parametrize("key", ["../escape", "a/b", "/etc/passwd", ".hidden", "", "a\\b", "x..y", "a b"])
async def test_keys_that_could_escape_the_store_are_refused(storage: Storage, key: str) -> None:
    with pytest.raises(InvalidKey):
        await storage.put(key, b"x", "image/webp")
    with pytest.raises(InvalidKey):
        await storage.get(key)


async def test_local_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    for index in range(5):
        await storage.put(f"k{index}_thumb.webp", b"x" * 1000, "image/webp")
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [f"k{i}_thumb.webp" for i in range(5)]


class TestPhotosOnS3:
    @pytest.fixture
    def settings_overrides(self, moto_endpoint: str, s3_bucket: str) -> dict[str, object]:
        return {
            "storage_backend": "s3",
            "s3_bucket": s3_bucket,
            "s3_endpoint_url": moto_endpoint,
            "s3_region": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }

    @staticmethod
    def _objects(moto_endpoint: str, bucket: str) -> list[str]:
        import boto3

        client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", **_boto_credentials())
        try:
            return sorted(obj["Key"] for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []))
        finally:
            client.close()

    async def test_upload_serve_and_delete_through_the_bucket(
        self, client: httpx.AsyncClient, mail: MemoryEmailBackend, moto_endpoint: str, s3_bucket: str
    ) -> None:
        account = await verified_account(client, mail)
        photo = await upload_ok(client, account, images.jpeg_with_metadata((1000, 800)))
        objects = self._objects(moto_endpoint, s3_bucket)
        assert len(objects) == 3 and all(key.endswith(".webp") for key in objects)

        response = await client.get(photo["urls"]["thumb"])
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/webp"
        assert b"SecretModel" not in response.content

        assert (await client.delete(f"/api/v1/me/photos/{photo['id']}", headers=account.headers)).status_code == 204
        assert self._objects(moto_endpoint, s3_bucket) == []
        assert_error(await client.get(photo["urls"]["thumb"]), 404, "not_found")


def _boto_credentials() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
