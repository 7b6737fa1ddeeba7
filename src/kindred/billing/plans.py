"""The plan catalogue behind `GET /plans`: built once per process from settings and the tier rules.

Plans change only with a deploy (display prices are settings, limits are `swipes.quotas.PLANS`), so the
catalogue is rendered once, at start-up, to bytes with a strong ETag. Requests are answered from memory
with no database or cache round trip, and clients and CDNs may keep the answer for `MAX_AGE` seconds and
revalidate it with `If-None-Match` (304). A deploy that changes a price changes the ETag.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, TypeAdapter

from kindred.models import Tier
from kindred.settings import Settings
from kindred.swipes.quotas import Plan, plan_for

MAX_AGE = 300  # seconds a client or CDN may reuse the catalogue before revalidating


class PlanRead(BaseModel):
    id: Literal["free", "premium_monthly", "premium_yearly"]
    tier: Literal["free", "premium"]
    name: str
    price_cents: int
    currency: str
    interval: Literal["month", "year"] | None
    limits: Plan  # the tier's rules, as the swipe and premium code enforce them


_PLANS = TypeAdapter(list[PlanRead])


def plans(settings: Settings) -> list[PlanRead]:
    free, premium = Tier.free.value, Tier.premium.value
    currency = settings.price_currency
    return [
        PlanRead(id="free", tier=free, name="Free", price_cents=0, currency=currency, interval=None,
                 limits=plan_for(free)),
        PlanRead(id="premium_monthly", tier=premium, name="Premium (monthly)",
                 price_cents=settings.price_premium_monthly_cents, currency=currency, interval="month",
                 limits=plan_for(premium)),
        PlanRead(id="premium_yearly", tier=premium, name="Premium (yearly)",
                 price_cents=settings.price_premium_yearly_cents, currency=currency, interval="year",
                 limits=plan_for(premium)),
    ]  # fmt: skip


class PlanCatalogue:
    """The rendered catalogue: the JSON body and its strong ETag."""

    def __init__(self, settings: Settings) -> None:
        self.body = _PLANS.dump_json(plans(settings))
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'

    def matches(self, if_none_match: str | None) -> bool:
        """True when the client's `If-None-Match` names the current catalogue (weak forms count, RFC 9110)."""
        if not if_none_match:
            return False
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or self.etag in tags
