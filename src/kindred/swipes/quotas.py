"""Daily quotas and entitlements by tier: what a free or premium member may do in a rolling 24 hours."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kindred.models import Swipe, SwipeAction, Tier

WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Plan:
    likes_per_day: int | None  # None = unlimited
    superlikes_per_day: int
    undo: bool
    likes_received: bool
    incognito: bool
    boosts: bool


PLANS = {
    Tier.free.value: Plan(likes_per_day=100, superlikes_per_day=1, undo=False, likes_received=False,
                          incognito=False, boosts=False),
    Tier.premium.value: Plan(likes_per_day=None, superlikes_per_day=5, undo=True, likes_received=True,
                             incognito=True, boosts=True),
}  # fmt: skip


def plan_for(tier: str) -> Plan:
    return PLANS.get(tier, PLANS[Tier.free.value])


class QuotasRead(BaseModel):
    likes_remaining: int | None
    superlikes_remaining: int
    resets_at: datetime | None


class EntitlementsRead(BaseModel):
    undo: bool
    likes_received: bool
    incognito: bool
    boosts: bool
    superlikes_per_day: int


def entitlements(tier: str) -> EntitlementsRead:
    plan = plan_for(tier)
    return EntitlementsRead(
        undo=plan.undo, likes_received=plan.likes_received, incognito=plan.incognito, boosts=plan.boosts,
        superlikes_per_day=plan.superlikes_per_day,
    )  # fmt: skip


async def _usage(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> dict[str, tuple[int, datetime]]:
    """Likes and superlikes used in the rolling window: action -> (count, oldest use)."""
    since = now - WINDOW
    rows = (
        await session.execute(
            select(Swipe.action, func.count(), func.min(Swipe.created_at))
            .where(
                Swipe.swiper_id == user_id,
                Swipe.created_at > since,
                Swipe.action.in_([SwipeAction.like.value, SwipeAction.superlike.value]),
            )
            .group_by(Swipe.action)
        )
    ).all()
    return {action: (count, oldest) for action, count, oldest in rows}


async def quotas(session: AsyncSession, user_id: uuid.UUID, tier: str, now: datetime) -> QuotasRead:
    """Remaining likes and superlikes in the rolling window; `resets_at` is when the oldest use expires."""
    used = await _usage(session, user_id, now)
    plan = plan_for(tier)
    likes_used, likes_oldest = used.get(SwipeAction.like.value, (0, None))
    supers_used, supers_oldest = used.get(SwipeAction.superlike.value, (0, None))
    oldest = [t for t in (likes_oldest if plan.likes_per_day is not None else None, supers_oldest) if t]
    return QuotasRead(
        likes_remaining=None if plan.likes_per_day is None else max(plan.likes_per_day - likes_used, 0),
        superlikes_remaining=max(plan.superlikes_per_day - supers_used, 0),
        resets_at=(min(oldest) + WINDOW) if oldest else None,
    )


async def exhausted_until(
    session: AsyncSession, user_id: uuid.UUID, tier: str, action: str, now: datetime
) -> datetime | None:
    """When `action` is used up: the moment its oldest use in the window expires; else None (may go ahead).

    Passes are never limited. Call with the swiper's row locked so concurrent likes see each other.
    """
    plan = plan_for(tier)
    if action == SwipeAction.like.value:
        limit = plan.likes_per_day
    elif action == SwipeAction.superlike.value:
        limit = plan.superlikes_per_day
    else:
        return None
    if limit is None:
        return None
    count, oldest = (await _usage(session, user_id, now)).get(action, (0, None))
    if count < limit:
        return None
    return (oldest + WINDOW) if oldest is not None else now + WINDOW
