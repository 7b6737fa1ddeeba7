"""Swipe, undo and boost failures."""

from __future__ import annotations

import math
from datetime import datetime

from kindred.kit.errors import AppError, Conflict
from kindred.profiles.exceptions import PremiumRequired

__all__ = ["AlreadySwiped", "BoostActive", "NothingToUndo", "PremiumRequired", "QuotaExhausted"]


class AlreadySwiped(Conflict):
    code, message = "already_swiped", "You have already swiped on this person."


class NothingToUndo(Conflict):
    code, message = "nothing_to_undo", "There is no pass to undo."


class BoostActive(Conflict):
    code, message = "boost_active", "A boost is already running."


class QuotaExhausted(AppError):
    status, code, message = 429, "quota_exhausted", "You have used today's quota. It refills as the day rolls on."

    def __init__(self, resets_at: datetime, now: datetime) -> None:
        seconds = max(1, math.ceil((resets_at - now).total_seconds()))
        super().__init__(
            details={"resets_at": resets_at.isoformat().replace("+00:00", "Z")},
            headers={"Retry-After": str(seconds)},
        )
