"""The report threshold: 5 distinct established reporters hide a profile and raise one moderation item."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from kindred.kit import clock
from kindred.kit.email import MemoryEmailBackend
from kindred.safety.service import THRESHOLD_PRIORITY
from tests.safety.helpers import (
    aged_account,
    audit_rows,
    is_hidden,
    moderation_items,
    report,
    reports_against,
    set_user,
)
from tests.support.factories import Account, verified_account


async def _established(app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend, n: int) -> list[Account]:
    return [await aged_account(app, client, mail) for _ in range(n)]


async def _report_all(client: httpx.AsyncClient, reporters: list[Account], target: Account) -> None:
    for reporter in reporters:
        response = await report(client, reporter, target)
        assert response.status_code == 201, response.text


async def test_four_established_reporters_do_not_hide_anyone(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    target = await verified_account(client, mail)
    await _report_all(client, await _established(app, client, mail, 4), target)
    assert not await is_hidden(app, target)
    assert await moderation_items(app, target) == []
    assert await audit_rows(app, "safety.hidden_pending_review") == []


async def test_five_established_reporters_hide_the_profile_pending_review(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    target = await verified_account(client, mail)
    await _report_all(client, await _established(app, client, mail, 5), target)
    assert await is_hidden(app, target)


async def test_the_fifth_reporter_raises_one_high_priority_moderation_item(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    target = await verified_account(client, mail)
    await _report_all(client, await _established(app, client, mail, 5), target)
    [item] = await moderation_items(app, target)
    assert (item.kind, item.priority, item.status) == ("report_threshold", THRESHOLD_PRIORITY, "open")


async def test_hiding_writes_an_audit_row_about_the_user_without_personal_data(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    target = await verified_account(client, mail)
    await _report_all(client, await _established(app, client, mail, 5), target)
    [row] = await audit_rows(app, "safety.hidden_pending_review")
    assert (row.target_type, row.target_id, row.actor_id) == ("user", target.id, None)
    assert target.email not in repr([row.reason, row.meta, row.target_id])


async def test_a_sixth_report_does_not_raise_a_second_moderation_item(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    target = await verified_account(client, mail)
    await _report_all(client, await _established(app, client, mail, 6), target)
    assert await is_hidden(app, target)
    assert len(await moderation_items(app, target)) == 1
    assert len(await audit_rows(app, "safety.hidden_pending_review")) == 1


async def test_an_unverified_fifth_reporter_does_not_count(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    target = await verified_account(client, mail)
    reporters = await _established(app, client, mail, 5)
    await set_user(app, reporters[-1], email_verified_at=None)
    await _report_all(client, reporters, target)
    assert len(await reports_against(app, target)) == 5  # stored, just not counted
    assert not await is_hidden(app, target)
    assert await moderation_items(app, target) == []


async def test_a_one_hour_old_fifth_reporter_does_not_count(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    target = await verified_account(client, mail)
    reporters = await _established(app, client, mail, 4)
    reporters.append(await aged_account(app, client, mail, age=timedelta(hours=1)))
    await _report_all(client, reporters, target)
    assert len(await reports_against(app, target)) == 5
    assert not await is_hidden(app, target)
    assert await moderation_items(app, target) == []


async def test_an_account_counts_once_it_is_older_than_24_hours_by_the_clock(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = await verified_account(client, mail)
    reporters = await _established(app, client, mail, 4)
    fresh = await verified_account(client, mail)
    await _report_all(client, reporters, target)
    real_now = clock.now
    monkeypatch.setattr(clock, "now", lambda: real_now() + timedelta(hours=25))
    await _report_all(client, [fresh], target)
    assert await is_hidden(app, target)


async def test_the_same_reporter_five_times_counts_once(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    target = await verified_account(client, mail)
    [reporter] = await _established(app, client, mail, 1)
    await _report_all(client, [reporter] * 5, target)
    assert len(await reports_against(app, target)) == 5
    assert not await is_hidden(app, target)
    assert await moderation_items(app, target) == []


async def test_four_reporters_repeating_themselves_do_not_reach_the_threshold(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    target = await verified_account(client, mail)
    reporters = await _established(app, client, mail, 4)
    await _report_all(client, reporters + reporters, target)
    assert not await is_hidden(app, target)


async def test_simultaneous_fifth_and_sixth_reports_raise_one_moderation_item(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    target = await verified_account(client, mail)
    reporters = await _established(app, client, mail, 6)
    await _report_all(client, reporters[:4], target)
    responses = await asyncio.gather(*(report(client, r, target) for r in reporters[4:]))
    assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
    assert await is_hidden(app, target)
    assert len(await moderation_items(app, target)) == 1
    assert len(await audit_rows(app, "safety.hidden_pending_review")) == 1
