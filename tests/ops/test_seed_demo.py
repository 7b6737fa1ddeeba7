"""`kindred seed-demo`: a usable demo in one command — the demo login works and discovery is not empty."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from kindred.models import Profile, User
from kindred.ops.seed import DEMO_EMAIL, DEMO_PASSWORD, seed_demo
from kindred.settings import Environment, Settings
from tests.support import leaks


async def test_seeded_demo_login_sees_people_nearby(client: httpx.AsyncClient, settings: Settings, app: object) -> None:
    leaks.canary(DEMO_PASSWORD)
    result = await seed_demo(settings, 120)
    assert result is not None and result.users == 120
    login = await client.post("/api/v1/auth/login", json={"email": DEMO_EMAIL, "password": DEMO_PASSWORD})
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    page = (await client.get("/api/v1/discover", params={"limit": 50}, headers=headers)).json()
    assert len(page["items"]) >= 5
    assert all(21 <= card["age"] <= 46 and card["distance_km"] >= 1 for card in page["items"])
    assert all(1 <= len(card["photos"]) <= 3 for card in page["items"])
    image = await client.get(page["items"][0]["photos"][0]["urls"]["thumb"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/webp"


async def test_deleting_a_shared_demo_photo_keeps_the_files_others_use(
    client: httpx.AsyncClient, settings: Settings, app: object
) -> None:
    leaks.canary(DEMO_PASSWORD)
    await seed_demo(settings, 30)
    member = await client.post(
        "/api/v1/auth/login", json={"email": "demo.member1@example.com", "password": DEMO_PASSWORD}
    )
    headers = {"Authorization": f"Bearer {member.json()['access_token']}"}
    me = (await client.get("/api/v1/me", headers=headers)).json()
    photo = me["photos"][0]
    assert (await client.delete(f"/api/v1/me/photos/{photo['id']}", headers=headers)).status_code == 204
    assert settings.storage_path is not None
    stored = {path.name for path in settings.storage_path.iterdir()}
    assert {f"demo{n:02d}_thumb.webp" for n in range(8)} <= stored


async def test_if_empty_adds_nothing_to_a_database_with_users(settings: Settings, app: object) -> None:
    await seed_demo(settings, 5)
    assert await seed_demo(settings, 5, if_empty=True) is None


async def test_every_demo_member_is_verified_with_a_located_profile(settings: Settings, app: object) -> None:
    from kindred.kit.db import Database

    await seed_demo(settings, 40)
    db = Database(settings)
    try:
        async with db.sessionmaker() as session:
            users = await session.scalar(
                select(func.count()).select_from(User).where(User.email_verified_at.is_not(None))
            )
            located = await session.scalar(
                select(func.count()).select_from(Profile).where(Profile.cell_lat.is_not(None))
            )
    finally:
        await db.dispose()
    assert users == located == 41  # 40 members and the demo login


async def test_seed_demo_refuses_production(settings: Settings) -> None:
    with pytest.raises(ValueError, match="production"):
        await seed_demo(settings.model_copy(update={"environment": Environment.production}), 1)
