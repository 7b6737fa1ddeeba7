"""The benchmark's ceiling: a bare Starlette JSON endpoint, served exactly like `kindred serve`.

One route, no middleware, no auth, no database: its requests/s is the most one uvicorn worker on this
machine can answer, so `GET /api/v1/me` is reported as a fraction of it (a ratio measured in the same
run, which stays meaningful on a noisy or slower machine). The body has the same shape and roughly the
same size as `/me`'s, so both runs move the same number of bytes.

    python bench/bare.py --port 8765
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

# Same keys as `/me`'s `user` object (kindred.auth.schemas.UserRead), fixed values.
BODY = {
    "user": {
        "id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "email": "bench-0123456789abcdef@example.com",
        "display_name": "Bench",
        "role": "user",
        "tier": "free",
        "email_verified": True,
        "created_at": "2026-01-01T00:00:00Z",
    }
}


async def me(request: Request) -> JSONResponse:
    return JSONResponse(BODY)


app = Starlette(routes=[Route("/me", me)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The same server settings as kindred.cli.serve: one worker, uvloop, httptools, no access log.
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        server_header=False,
        timeout_keep_alive=75,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
