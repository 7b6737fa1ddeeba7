"""Blob storage for media: one async interface, a local-folder backend and an S3-compatible backend."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio.to_thread

if TYPE_CHECKING:
    from kindred.settings import Settings

# Flat keys only: letters, digits, `_`, `-`, and dots that never start a key (so no `..`, no `/`).
_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")


class InvalidKey(ValueError):
    """A storage key that could escape the store (path separators, `..`, odd characters)."""


def validate_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key:
        raise InvalidKey("invalid storage key")
    return key


class Storage(Protocol):
    name: str

    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def delete(self, *keys: str) -> None: ...

    async def exists(self, key: str) -> bool: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class LocalStorage:
    """Files in one folder. Writes are atomic (temp file + rename), so a reader never sees half a file."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        await anyio.to_thread.run_sync(self._write, path, data)

    def _write(self, path: Path, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{secrets.token_hex(8)}"
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    async def get(self, key: str) -> bytes | None:
        path = self._path(key)

        def read() -> bytes | None:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                return None

        return await anyio.to_thread.run_sync(read)

    async def delete(self, *keys: str) -> None:
        paths = [self._path(key) for key in keys]

        def remove() -> None:
            for path in paths:
                path.unlink(missing_ok=True)

        await anyio.to_thread.run_sync(remove)

    async def exists(self, key: str) -> bool:
        path = self._path(key)
        return await anyio.to_thread.run_sync(path.is_file)

    async def ping(self) -> None:
        def check() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise PermissionError("storage folder is not writable")

        await anyio.to_thread.run_sync(check)

    async def close(self) -> None:
        return None


class S3Storage:
    """An S3-compatible bucket through plain boto3, each call in a worker thread (boto3 is blocking).

    boto3 clients are thread-safe; one client is shared by every call.
    """

    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region or "us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(
                connect_timeout=3,
                read_timeout=10,
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        validate_key(key)
        await anyio.to_thread.run_sync(
            lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        )

    async def get(self, key: str) -> bytes | None:
        validate_key(key)

        def read() -> bytes | None:
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            except self.client.exceptions.NoSuchKey:
                return None
            body = response["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()

        return await anyio.to_thread.run_sync(read)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            validate_key(key)
        if not keys:
            return

        def remove() -> None:
            for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
                batch = [{"Key": key} for key in keys[start : start + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

        await anyio.to_thread.run_sync(remove)

    async def exists(self, key: str) -> bool:
        validate_key(key)
        from botocore.exceptions import ClientError

        def head() -> bool:
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                    return False
                raise
            return True

        return await anyio.to_thread.run_sync(head)

    async def ping(self) -> None:
        await anyio.to_thread.run_sync(lambda: self.client.head_bucket(Bucket=self.bucket))

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.client.close)


def create_storage(settings: Settings) -> Storage:
    if settings.storage_backend == "local":
        assert settings.storage_path is not None  # filled in by Settings
        return LocalStorage(settings.storage_path)
    if settings.storage_backend == "s3":
        if not settings.s3_bucket:
            raise ValueError("S3_BUCKET is required with STORAGE_BACKEND=s3")
        return S3Storage(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key=settings.aws_access_key_id,
            secret_key=settings.aws_secret_access_key,
        )
    raise ValueError(f"unknown STORAGE_BACKEND {settings.storage_backend!r} (use 'local' or 's3')")
