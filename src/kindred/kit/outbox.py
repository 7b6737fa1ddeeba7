"""Emails queued during a request and sent only after its transaction has committed."""

from __future__ import annotations

from typing import Any

from kindred.kit.email import Mailer


class Outbox:
    def __init__(self, mailer: Mailer) -> None:
        self._mailer = mailer
        self._pending: list[tuple[str, str, dict[str, Any]]] = []

    def add(self, to: str, template: str, **context: Any) -> None:
        self._pending.append((to, template, context))

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        for to, template, context in pending:
            await self._mailer.send(to, template, **context)
