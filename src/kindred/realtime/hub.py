"""What the socket endpoint needs from the app, made once per app in its lifespan."""

from __future__ import annotations

from kindred.kit.cache import Cache
from kindred.kit.db import Database
from kindred.realtime.origins import OriginPolicy
from kindred.realtime.presence import Presence
from kindred.realtime.registry import CLOSE_GOING_AWAY, SocketRegistry
from kindred.settings import Settings


class Realtime:
    """This instance's open sockets, presence bookkeeping and origin policy (`app.state.realtime`)."""

    def __init__(self, settings: Settings, db: Database, cache: Cache) -> None:
        self.sockets = SocketRegistry()
        self.presence = Presence(db, cache)
        self.origins = OriginPolicy(settings)

    async def close(self, code: int = CLOSE_GOING_AWAY) -> None:
        """Server shutdown: every socket here closes with `code` (1001) before connections are torn down."""
        await self.sockets.close_all(code)
