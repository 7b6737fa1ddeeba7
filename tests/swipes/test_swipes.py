"""POST /swipes: visibility, one swipe per target, comments, daily quotas, and the mutual like."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from kindred.kit import clock
from kindred.models import AuditEntry, Block, Match, Swipe
from tests.discovery.conftest import MakePerson, add_rows, uid
from tests.support.assertions import assert_error
from tests.swipes.helpers import SWIPES, count_rows, filler_users, matches_between, pair, set_tier, swipe


async def test_a_like_is_201_with_no_match_and_the_remaining_quotas(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    response = await swipe(client, man, woman)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"swipe_id", "match", "quotas"} and body["match"] is None
    assert body["quotas"]["likes_remaining"] == 99 and body["quotas"]["superlikes_remaining"] == 1
    assert await count_rows(app, Swipe, Swipe.id == uuid.UUID(body["swipe_id"]), Swipe.action == "like") == 1


async def test_second_swipe_on_same_target_is_409(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, woman = await pair(person)
    assert (await swipe(client, man, woman, "pass")).status_code == 201
    assert_error(await swipe(client, man, woman, "like"), 409, "already_swiped")
    assert await count_rows(app, Swipe, Swipe.swiper_id == uid(man)) == 1


async def test_an_incompatible_target_is_404(client: httpx.AsyncClient, person: MakePerson) -> None:
    man = await person(gender="man", interested_in=["woman"])
    other = await person(gender="woman", interested_in=["woman"])
    assert_error(await swipe(client, man, other), 404, "user_not_found")


async def test_an_unknown_target_is_404(client: httpx.AsyncClient, person: MakePerson) -> None:
    man = await person(gender="man", interested_in=["woman"])
    body = {"target_id": str(uuid.uuid4()), "action": "like"}
    assert_error(await client.post(SWIPES, json=body, headers=man.headers), 404, "user_not_found")


async def test_swiping_yourself_is_404(client: httpx.AsyncClient, person: MakePerson) -> None:
    man = await person(gender="man", interested_in=["woman"])
    assert_error(await swipe(client, man, man), 404, "user_not_found")


async def test_a_blocked_target_is_404(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, woman = await pair(person)
    await add_rows(app, Block(blocker_id=uid(woman), blocked_id=uid(man)))
    assert_error(await swipe(client, man, woman), 404, "user_not_found")


async def test_a_comment_is_kept_with_a_superlike(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, woman = await pair(person)
    response = await swipe(client, man, woman, "superlike", comment="Great taste in books")
    assert response.status_code == 201, response.text
    assert await count_rows(app, Swipe, Swipe.comment == "Great taste in books", Swipe.action == "superlike") == 1


async def test_a_comment_with_a_like_is_422(client: httpx.AsyncClient, person: MakePerson) -> None:
    man, woman = await pair(person)
    assert_error(await swipe(client, man, woman, "like", comment="hi"), 422, "validation_error")


async def test_a_comment_over_200_characters_is_422(client: httpx.AsyncClient, person: MakePerson) -> None:
    man, woman = await pair(person)
    assert_error(await swipe(client, man, woman, "superlike", comment="x" * 201), 422, "validation_error")


async def test_an_unknown_action_is_422(client: httpx.AsyncClient, person: MakePerson) -> None:
    man, woman = await pair(person)
    assert_error(await swipe(client, man, woman, "maybe"), 422, "validation_error")


# ---------------------------------------------------------------------------------------------- quotas


async def _past_likes(app: FastAPI, swiper: uuid.UUID, count: int, *, oldest: datetime, action: str = "like") -> None:
    targets = await filler_users(app, count)
    await add_rows(
        app,
        *[
            Swipe(swiper_id=swiper, target_id=t, action=action, created_at=oldest + timedelta(minutes=i))
            for i, t in enumerate(targets)
        ],
    )


async def test_the_101st_free_like_in_24_hours_is_429_with_reset_time_and_retry_after(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    oldest = clock.now() - timedelta(hours=20)
    await _past_likes(app, uid(man), 100, oldest=oldest)
    response = await swipe(client, man, woman)
    error = assert_error(response, 429, "quota_exhausted")
    resets_at = datetime.fromisoformat(error["details"]["resets_at"])
    assert error["details"]["resets_at"].endswith("Z")
    assert abs((resets_at - (oldest + timedelta(hours=24))).total_seconds()) < 1
    assert 4 * 3600 - 60 <= int(response.headers["retry-after"]) <= 4 * 3600 + 1
    assert await count_rows(app, Swipe, Swipe.target_id == uid(woman)) == 0


async def test_a_like_older_than_24_hours_does_not_count(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    await _past_likes(app, uid(man), 1, oldest=clock.now() - timedelta(hours=25))
    await _past_likes(app, uid(man), 99, oldest=clock.now() - timedelta(hours=20))
    response = await swipe(client, man, woman)
    assert response.status_code == 201, response.text
    assert response.json()["quotas"]["likes_remaining"] == 0


async def test_passes_are_never_limited(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, woman = await pair(person)
    await _past_likes(app, uid(man), 100, oldest=clock.now() - timedelta(hours=1))
    await _past_likes(app, uid(man), 150, oldest=clock.now() - timedelta(hours=1), action="pass")
    assert (await swipe(client, man, woman, "pass")).status_code == 201


async def test_a_second_free_superlike_in_24_hours_is_429(client: httpx.AsyncClient, person: MakePerson) -> None:
    man, woman = await pair(person)
    other = await person(gender="woman", interested_in=["man"])
    first = await swipe(client, man, woman, "superlike")
    assert first.status_code == 201 and first.json()["quotas"]["superlikes_remaining"] == 0
    error = assert_error(await swipe(client, man, other, "superlike"), 429, "quota_exhausted")
    assert "resets_at" in error["details"]


async def test_premium_likes_are_unlimited(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, woman = await pair(person)
    await set_tier(app, man, "premium")
    await _past_likes(app, uid(man), 100, oldest=clock.now() - timedelta(hours=1))
    response = await swipe(client, man, woman)
    assert response.status_code == 201, response.text
    assert response.json()["quotas"] == {"likes_remaining": None, "superlikes_remaining": 5, "resets_at": None}


async def test_a_sixth_premium_superlike_is_429(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, woman = await pair(person)
    await set_tier(app, man, "premium")
    await _past_likes(app, uid(man), 5, oldest=clock.now() - timedelta(hours=1), action="superlike")
    assert_error(await swipe(client, man, woman, "superlike"), 429, "quota_exhausted")


async def test_me_quotas_decrease_after_a_like(client: httpx.AsyncClient, person: MakePerson) -> None:
    man, woman = await pair(person)
    before = (await client.get("/api/v1/me", headers=man.headers)).json()["quotas"]
    assert before["likes_remaining"] == 100 and before["resets_at"] is None
    assert (await swipe(client, man, woman)).status_code == 201
    after = (await client.get("/api/v1/me", headers=man.headers)).json()["quotas"]
    assert after["likes_remaining"] == 99 and after["resets_at"] is not None


# ---------------------------------------------------------------------------------------------- matches


async def test_a_mutual_like_creates_one_match_with_the_other_persons_card(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    assert (await swipe(client, woman, man, "superlike")).json()["match"] is None
    response = await swipe(client, man, woman)
    assert response.status_code == 201, response.text
    match = response.json()["match"]
    assert set(match) == {"id", "created_at", "user", "last_message", "unread_count"}
    assert match["user"]["id"] == woman.id and match["last_message"] is None and match["unread_count"] == 0
    rows = await matches_between(app, man, woman)
    assert [str(r.id) for r in rows] == [match["id"]]
    assert (
        await count_rows(app, AuditEntry, AuditEntry.action == "match.created", AuditEntry.target_id == match["id"])
        == 1
    )


async def test_a_like_after_their_pass_makes_no_match(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    assert (await swipe(client, woman, man, "pass")).status_code == 201
    assert (await swipe(client, man, woman)).json()["match"] is None
    assert await matches_between(app, man, woman) == []


async def test_concurrent_mutual_likes_create_exactly_one_match(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    for _ in range(10):
        man, woman = await pair(person)
        first, second = await asyncio.gather(swipe(client, man, woman), swipe(client, woman, man))
        assert first.status_code == 201 and second.status_code == 201, (first.text, second.text)
        rows = await matches_between(app, man, woman)
        assert len(rows) == 1
        reported = {r.json()["match"]["id"] for r in (first, second) if r.json()["match"] is not None}
        assert reported == {str(rows[0].id)}


async def test_concurrent_duplicate_swipes_make_one_row_and_one_409(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    responses = await asyncio.gather(swipe(client, man, woman), swipe(client, man, woman, "pass"))
    assert sorted(r.status_code for r in responses) == [201, 409]
    async with app.state.db.sessionmaker() as session:
        assert len((await session.scalars(select(Swipe).where(Swipe.swiper_id == uid(man)))).all()) == 1


async def test_an_existing_match_is_not_duplicated(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, woman = await pair(person)
    low, high = sorted((uid(man), uid(woman)))
    existing = Match(user_low=low, user_high=high)
    await add_rows(app, existing, Swipe(swiper_id=uid(woman), target_id=uid(man), action="like"))
    response = await swipe(client, man, woman)
    assert response.json()["match"]["id"] == str(existing.id)
    assert len(await matches_between(app, man, woman)) == 1


async def test_concurrent_likes_cannot_exceed_the_quota(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    other = await person(gender="woman", interested_in=["man"])
    await _past_likes(app, uid(man), 99, oldest=clock.now() - timedelta(hours=1))
    responses = await asyncio.gather(swipe(client, man, woman), swipe(client, man, other))
    assert sorted(r.status_code for r in responses) == [201, 429]
    assert await count_rows(app, Swipe, Swipe.swiper_id == uid(man), Swipe.action == "like") == 100
