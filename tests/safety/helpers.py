"""Safety test helpers: accounts of a chosen age and verification, and database reads."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, update

from kindred.kit import clock
from kindred.kit.email import MemoryEmailBackend
from kindred.models import AuditEntry, Block, ModerationItem, Profile, Report, User
from tests.support.factories import Account, verified_account


async def set_user(app: FastAPI, account: Account, **values: Any) -> None:
    async with app.state.db.sessionmaker() as session:
        await session.execute(update(User).where(User.id == uuid.UUID(account.id)).values(**values))
        await session.commit()


async def aged_account(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend, *, age: timedelta = timedelta(days=2)
) -> Account:
    """A verified account whose `created_at` lies `age` in the past (established when older than 24 h)."""
    account = await verified_account(client, mail)
    await set_user(app, account, created_at=clock.now() - age)
    return account


async def report(client: httpx.AsyncClient, reporter: Account, target: Account, **extra: Any) -> httpx.Response:
    return await client.post(
        "/api/v1/reports", headers=reporter.headers, json={"user_id": target.id, "reason": "spam", **extra}
    )


async def block_count(app: FastAPI, blocker: Account, blocked: Account) -> int:
    async with app.state.db.sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(Block)
                .where(Block.blocker_id == uuid.UUID(blocker.id), Block.blocked_id == uuid.UUID(blocked.id))
            )
            or 0
        )


async def reports_against(app: FastAPI, target: Account) -> list[Report]:
    async with app.state.db.sessionmaker() as session:
        return list(await session.scalars(select(Report).where(Report.reported_id == uuid.UUID(target.id))))


async def is_hidden(app: FastAPI, account: Account) -> bool:
    async with app.state.db.sessionmaker() as session:
        profile = await session.get(Profile, uuid.UUID(account.id))
        assert profile is not None
        return profile.hidden_pending_review


async def moderation_items(app: FastAPI, account: Account) -> list[ModerationItem]:
    async with app.state.db.sessionmaker() as session:
        return list(
            await session.scalars(select(ModerationItem).where(ModerationItem.subject_user_id == uuid.UUID(account.id)))
        )


async def audit_rows(app: FastAPI, action: str) -> list[AuditEntry]:
    async with app.state.db.sessionmaker() as session:
        return list(await session.scalars(select(AuditEntry).where(AuditEntry.action == action)))
