"""Business counters: signups, matches, messages, photo uploads, premium conversions — counted after commit."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from kindred.kit.email import MemoryEmailBackend
from kindred.observability.metrics import count_after_commit
from kindred.ops.accounts import set_tier
from kindred.settings import Settings
from tests.chat.helpers import matched_pair, send, sent
from tests.discovery.conftest import MakePerson, person
from tests.observability.helpers import scrape, value
from tests.photos import images
from tests.photos.conftest import upload_ok
from tests.support.factories import emailed_token, register, verified_account
from tests.swipes.helpers import pair, swipe

__all__ = ["person"]  # the fixture, imported for the tests below


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, object]:
    return {"storage_path": tmp_path / "media"}  # photo uploads land in this test's own folder


async def test_a_signup_counts_registered_then_verified_once(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    body = await register(client)
    samples = await scrape(client)
    assert value(samples, "kindred_signups_total", stage="registered") == 1
    assert value(samples, "kindred_signups_total", stage="verified") == 0

    token = emailed_token(mail, body["email"], "verify_email")
    assert (await client.post("/api/v1/auth/verify-email", json={"token": token})).status_code == 200
    again = await client.post("/api/v1/auth/register", json=body)  # the same address: no new account
    assert again.status_code == 202
    samples = await scrape(client)
    assert value(samples, "kindred_signups_total", stage="registered") == 1
    assert value(samples, "kindred_signups_total", stage="verified") == 1


async def test_a_mutual_like_counts_one_match(client: httpx.AsyncClient, person: MakePerson) -> None:
    man, woman = await pair(person)
    assert (await swipe(client, man, woman)).status_code == 201
    assert value(await scrape(client), "kindred_matches_total") == 0  # a like alone is not a match
    assert (await swipe(client, woman, man)).json()["match"] is not None
    assert value(await scrape(client), "kindred_matches_total") == 1


async def test_a_message_is_counted_once_even_when_retried(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    await sent(client, man, match.id, "hello there")
    retry_id = uuid.uuid4().hex
    assert (await send(client, woman, match.id, "hi!", client_id=retry_id)).status_code == 201
    assert (await send(client, woman, match.id, "hi!", client_id=retry_id)).status_code == 200  # the same message
    assert value(await scrape(client), "kindred_messages_total") == 2


async def test_a_stored_photo_is_counted_and_a_rejected_one_is_not(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    await upload_ok(client, account, images.small_jpeg())
    bad = await client.post(
        "/api/v1/me/photos", headers=account.headers, files={"file": ("x.jpg", images.truncated_jpeg(), "image/jpeg")}
    )
    assert bad.status_code >= 400
    assert value(await scrape(client), "kindred_photo_uploads_total") == 1


async def test_set_tier_counts_a_conversion_only_from_free_to_premium(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    metrics = app.state.metrics
    assert await set_tier(settings, email=account.email, tier="premium", metrics=metrics)
    assert await set_tier(settings, email=account.email, tier="premium", metrics=metrics)  # already premium
    assert value(await scrape(client), "kindred_premium_conversions_total") == 1
    assert await set_tier(settings, email=account.email, tier="free", metrics=metrics)
    assert await set_tier(settings, email=account.email, tier="premium", metrics=metrics)
    assert value(await scrape(client), "kindred_premium_conversions_total") == 2


async def test_nothing_is_counted_when_the_transaction_rolls_back(client: httpx.AsyncClient, app: FastAPI) -> None:
    with pytest.raises(RuntimeError):
        async with app.state.db.unit_of_work() as session:
            count_after_commit(session, "match.created")
            raise RuntimeError("the write failed")
    async with app.state.db.unit_of_work() as session:
        count_after_commit(session, "message.sent")
    samples = await scrape(client)
    assert value(samples, "kindred_matches_total") == 0
    assert value(samples, "kindred_messages_total") == 1


async def test_a_session_made_outside_the_app_counts_nothing(settings: Settings) -> None:
    from kindred.kit.db import Database

    db = Database(settings)
    try:
        async with db.unit_of_work() as session:
            count_after_commit(session, "match.created")  # no metrics in this session's info: a no-op
    finally:
        await db.dispose()
