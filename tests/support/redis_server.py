"""A private, throw-away redis-server for tests on a free port of 127.0.0.1 (never the shared 6379)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.requirements import missing


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    # Only ever our own child, by its own PID: never a shared server.
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextmanager
def redis_server(timeout: float = 10.0) -> Iterator[str]:
    """Start redis-server without persistence, yield its URL, stop it afterwards.

    Skips the test (or fails it under KINDRED_REQUIRE_ALL=1) when redis-server is not installed.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server not installed")
    assert binary is not None
    with tempfile.TemporaryDirectory(prefix="kindred-redis-") as workdir:
        log_path = Path(workdir) / "redis.log"
        for _attempt in range(3):  # the free port can be taken between probing and binding it
            port = free_port()
            command = [
                binary,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", workdir,
                "--logfile", str(log_path),
            ]  # fmt: skip
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + timeout
                while process.poll() is None and time.monotonic() < deadline:
                    if _answers_ping(port):
                        break
                    time.sleep(0.05)
                else:
                    continue  # exited (port taken?) or never answered: try another port
                yield f"redis://127.0.0.1:{port}/0"
                return
            finally:
                _stop(process)
        log_tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        raise RuntimeError(f"redis-server did not start:\n{log_tail}")


@contextmanager
def shared_or_private_redis() -> Iterator[str]:
    """TEST_REDIS_URL when set (shared: tests touch only keys under their own prefix), else a private server."""
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    with redis_server() as private_url:
        yield private_url
