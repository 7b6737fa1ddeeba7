"""Moderators and admins for tests: a verified account promoted in the database, its cached state dropped."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from kindred.auth.session_state import forget
from kindred.kit.email import MemoryEmailBackend
from kindred.models import User
from tests.support.factories import Account, verified_account


async def staff_account(app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend, role: str) -> Account:
    account = await verified_account(client, mail)
    async with app.state.db.sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.id == uuid.UUID(account.id)).values(role=role))
    await forget(app.state.cache, [app.state.signer.verify(account.access_token).session_id])
    return account
