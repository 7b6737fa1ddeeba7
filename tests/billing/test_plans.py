"""`GET /plans`: the three plans with their prices and limits, public, served from memory and cacheable."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from kindred.billing.plans import PlanCatalogue
from kindred.kit.email import MemoryEmailBackend
from kindred.settings import Settings
from kindred.swipes.quotas import entitlements
from tests.matches.test_chat_fields import counting_queries
from tests.support.factories import verified_account

PLANS = "/api/v1/plans"
FREE_LIMITS = {
    "likes_per_day": 100, "superlikes_per_day": 1, "undo": False, "likes_received": False, "incognito": False,
    "boosts": False,
}  # fmt: skip
PREMIUM_LIMITS = {
    "likes_per_day": None, "superlikes_per_day": 5, "undo": True, "likes_received": True, "incognito": True,
    "boosts": True,
}  # fmt: skip


async def test_anyone_sees_the_three_plans_as_a_bare_array(client: httpx.AsyncClient) -> None:
    response = await client.get(PLANS)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    plans = response.json()
    assert [plan["id"] for plan in plans] == ["free", "premium_monthly", "premium_yearly"]
    free, monthly, yearly = plans
    assert free == {
        "id": "free", "tier": "free", "name": "Free", "price_cents": 0, "currency": "usd", "interval": None,
        "limits": FREE_LIMITS,
    }  # fmt: skip
    assert (monthly["tier"], monthly["price_cents"], monthly["currency"], monthly["interval"]) == (
        "premium",
        1499,
        "usd",
        "month",
    )
    assert (yearly["tier"], yearly["price_cents"], yearly["currency"], yearly["interval"]) == (
        "premium",
        9999,
        "usd",
        "year",
    )
    assert monthly["limits"] == yearly["limits"] == PREMIUM_LIMITS


def test_the_plan_limits_are_the_rules_the_api_enforces() -> None:
    """The paywall cannot promise what the swipe rules do not grant: both read `swipes.quotas.PLANS`."""
    for tier, limits in (("free", FREE_LIMITS), ("premium", PREMIUM_LIMITS)):
        granted = entitlements(tier).model_dump()
        assert {key: limits[key] for key in granted} == granted


@pytest.mark.parametrize(
    "settings_overrides",
    [{"price_premium_monthly_cents": 999, "price_premium_yearly_cents": 5999, "price_currency": "EUR"}],
)
async def test_prices_and_currency_come_from_settings(client: httpx.AsyncClient) -> None:
    plans = (await client.get(PLANS)).json()
    assert [(plan["price_cents"], plan["currency"]) for plan in plans] == [(0, "eur"), (999, "eur"), (5999, "eur")]


@pytest.mark.parametrize("value", ["euro", "u$d", ""])
def test_a_currency_that_is_not_a_three_letter_code_is_refused_at_start_up(value: str) -> None:
    with pytest.raises(ValidationError, match="three-letter"):
        Settings(price_currency=value)


def test_a_negative_price_is_refused_at_start_up() -> None:
    with pytest.raises(ValidationError, match="price_premium_monthly_cents"):
        Settings(price_premium_monthly_cents=-1)


async def test_the_catalogue_is_served_from_memory_without_database_or_cache(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await client.get(PLANS)
    before = app.state.cache.stats()
    with counting_queries(app) as statements:
        response = await client.get(PLANS)
    assert response.status_code == 200
    assert statements == []
    after = app.state.cache.stats()
    assert (after["hits"], after["misses"]) == (before["hits"], before["misses"])


async def test_clients_and_cdns_may_cache_it_and_revalidate_with_the_etag(client: httpx.AsyncClient) -> None:
    first = await client.get(PLANS)
    assert first.headers["cache-control"] == "public, max-age=300"
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    for if_none_match in (etag, f"W/{etag}", f'"stale", {etag}', "*"):
        again = await client.get(PLANS, headers={"If-None-Match": if_none_match})
        assert again.status_code == 304, if_none_match
        assert again.content == b""
        assert again.headers["etag"] == etag
    stale = await client.get(PLANS, headers={"If-None-Match": '"an-older-catalogue"'})
    assert stale.status_code == 200
    assert stale.json() == first.json()


@pytest.mark.parametrize("settings_overrides", [{"price_premium_monthly_cents": 1299}])
async def test_a_price_change_changes_the_etag(client: httpx.AsyncClient, settings: Settings) -> None:
    changed = (await client.get(PLANS)).headers["etag"]
    default = PlanCatalogue(settings.model_copy(update={"price_premium_monthly_cents": 1499})).etag
    assert changed != default


async def test_signed_in_members_see_the_same_catalogue(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    signed_in = await client.get(PLANS, headers=account.headers)
    anonymous = await client.get(PLANS)
    assert signed_in.status_code == 200
    assert signed_in.content == anonymous.content


async def test_the_openapi_document_describes_a_bare_array_of_plans(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"][PLANS]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["type"] == "array"
    assert schema["items"] == {"$ref": "#/components/schemas/PlanRead"}
    plan = document["components"]["schemas"]["PlanRead"]
    assert set(plan["required"]) == {"id", "tier", "name", "price_cents", "currency", "interval", "limits"}
    assert "304" in operation["responses"]
