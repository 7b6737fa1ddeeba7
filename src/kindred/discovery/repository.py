"""All SQL for discovery and card visibility: every rule is a WHERE clause, evaluated by the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from kindred.models import AccountStatus, Match, Photo, PhotoStatus, Profile, Swipe, SwipeAction, User
from kindred.profiles import geo
from kindred.safety.repository import not_blocked_either_way, not_reported_by

LIKES = (SwipeAction.like.value, SwipeAction.superlike.value)
# A window's walk looks at no more than this many times the window size in people (docs/discovery.md).
WALK_LIMIT_FACTOR = 20


@dataclass(frozen=True)
class Viewer:
    """What the rules need about the person looking."""

    user_id: uuid.UUID
    age: int
    gender: str | None
    interested_in: list[str]
    age_min: int
    age_max: int
    max_distance_km: int
    cell_lat: float | None
    cell_lng: float | None


@dataclass(frozen=True)
class Window:
    """A slice of the feed by last activity: `floor <= last_active_at < upper` (docs/discovery.md).

    The first window has no upper bound and also holds everyone boosted at the feed's `as_of`; later
    windows leave the boosted out (they were in the first). A `floor` of None reaches down to the
    oldest, people who were never active included: the last window.
    """

    upper: datetime | None
    floor: datetime | None


@dataclass(frozen=True)
class CandidateRow:
    user_id: uuid.UUID
    birthdate: date
    profile: Profile
    distance_km: float | None
    rank: int
    window: Window | None = None


def distance_km(lat1: Any, lng1: Any, lat2: Any, lng2: Any) -> ColumnElement[float]:
    """Haversine in SQL (PostgreSQL and SQLite's math functions): the same formula as geo.haversine_km."""
    rad = 0.017453292519943295
    dlat = (lat2 - lat1) * rad / 2
    dlng = (lng2 - lng1) * rad / 2
    a = func.sin(dlat) * func.sin(dlat) + func.cos(lat1 * rad) * func.cos(lat2 * rad) * func.sin(dlng) * func.sin(dlng)
    # Rounding can push `a` a hair above 1 for antipodal points; asin would then fail on PostgreSQL.
    return 2 * geo.EARTH_RADIUS_KM * func.asin(func.sqrt(case((a > 1.0, 1.0), else_=a)))


def _birthdate_bounds(age_min: int, age_max: int, today: date) -> tuple[date, date]:
    """Birthdates of people aged age_min..age_max today: (earliest, latest) inclusive."""

    def years_ago(years: int) -> date:
        try:
            return today.replace(year=today.year - years)
        except ValueError:  # 29 February in a non-leap target year
            return today.replace(year=today.year - years, day=28)

    return years_ago(age_max + 1) + timedelta(days=1), years_ago(age_min)


class DiscoveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def viewer(self, user_id: uuid.UUID, today: date) -> Viewer | None:
        row = (
            await self.session.execute(
                select(User.birthdate, Profile).join(Profile, Profile.user_id == User.id).where(User.id == user_id)
            )
        ).first()
        if row is None:
            return None
        birthdate, profile = row
        age = today.year - birthdate.year - ((today.month, today.day) < (birthdate.month, birthdate.day))
        return Viewer(
            user_id=user_id, age=age, gender=profile.gender, interested_in=list(profile.interested_in or []),
            age_min=profile.age_min, age_max=profile.age_max, max_distance_km=profile.max_distance_km,
            cell_lat=profile.cell_lat, cell_lng=profile.cell_lng,
        )  # fmt: skip

    # ------------------------------------------------------------------ the rules, as SQL
    def _visible(self, viewer: Viewer, now: datetime) -> list[ColumnElement[bool]]:
        """A compatible, visible person for `viewer`, swiped or not (GET /users/{id} and discovery)."""
        assert viewer.cell_lat is not None and viewer.cell_lng is not None and viewer.gender is not None
        earliest, latest = _birthdate_bounds(viewer.age_min, viewer.age_max, now.date())
        min_lat, max_lat, min_lng, max_lng = geo.bounding_box(viewer.cell_lat, viewer.cell_lng, viewer.max_distance_km)
        dist = self._distance(viewer)
        me, other = viewer.user_id, Profile.user_id
        return [
            other != me,
            User.email_verified_at.is_not(None),
            or_(
                User.status == AccountStatus.active.value,
                and_(User.status == AccountStatus.suspended.value, User.suspended_until <= now),
            ),
            Profile.show_me.is_(True),
            Profile.hidden_pending_review.is_(False),
            # index pre-filter on the snapped position, then the exact rule
            Profile.cell_lat.between(min_lat, max_lat),
            Profile.cell_lng.between(min_lng, max_lng),
            dist <= viewer.max_distance_km,
            dist <= Profile.max_distance_km,
            # preferences, both ways
            Profile.gender.in_(viewer.interested_in),
            cast(Profile.interested_in, String).like(f'%"{viewer.gender}"%'),
            User.birthdate.between(earliest, latest),
            Profile.age_min <= viewer.age,
            Profile.age_max >= viewer.age,
            # safety: blocked either way, or reported by me (the clauses are the safety domain's)
            not_blocked_either_way(me, other),
            not_reported_by(me, other),
            # incognito people are seen only by those they liked
            or_(
                Profile.incognito.is_(False),
                exists().where(Swipe.swiper_id == other, Swipe.target_id == me, Swipe.action.in_(LIKES)),
            ),
        ]

    def _distance(self, viewer: Viewer) -> ColumnElement[float]:
        return distance_km(
            literal(viewer.cell_lat, Float), literal(viewer.cell_lng, Float), Profile.cell_lat, Profile.cell_lng
        )

    def _not_swiped_or_matched(self, viewer: Viewer) -> list[ColumnElement[bool]]:
        me, other = viewer.user_id, Profile.user_id
        return [
            ~exists().where(Swipe.swiper_id == me, Swipe.target_id == other),
            # two anti-joins, one per order of the pair: each an index lookup (see not_blocked_either_way)
            ~exists().where(Match.user_low == me, Match.user_high == other),
            ~exists().where(Match.user_low == other, Match.user_high == me),
        ]

    def _rank(self, viewer: Viewer, as_of: datetime) -> ColumnElement[int]:
        """The documented score (docs/discovery.md) as an integer, frozen at `as_of` so pages stay stable."""
        recency = case(
            (User.last_active_at >= as_of - timedelta(hours=1), 1.0),
            (User.last_active_at >= as_of - timedelta(days=1), 0.7),
            (User.last_active_at >= as_of - timedelta(days=7), 0.4),
            (User.last_active_at >= as_of - timedelta(days=30), 0.2),
            else_=0.0,
        )
        proximity = 1.0 - self._distance(viewer) / float(max(viewer.max_distance_km, 1))
        completeness = (
            case((Profile.bio != "", 0.25), else_=0.0)
            + case((cast(Profile.interests, String) != "[]", 0.25), else_=0.0)
            + case((cast(Profile.prompts, String) != "[]", 0.25), else_=0.0)
            + case(
                (exists().where(Photo.user_id == Profile.user_id, Photo.status == PhotoStatus.approved.value), 0.25),
                else_=0.0,
            )
        )
        boost = case((Profile.boost_until > as_of, 1.0), else_=0.0)
        score = 0.4 * recency + 0.3 * proximity + 0.3 * completeness + boost
        return cast(score * 1_000_000, Integer)

    def _boosted(self, as_of: datetime) -> ColumnElement[bool]:
        return and_(Profile.boost_until.is_not(None), Profile.boost_until > as_of)

    def _active_in(self, window: Window) -> ColumnElement[bool]:
        """Last activity inside the window's range (the range only: boosts are handled by the callers)."""
        active = User.last_active_at
        clauses: list[ColumnElement[bool]] = []
        if window.upper is not None:
            clauses.append(
                active < window.upper if window.floor is not None else or_(active < window.upper, active.is_(None))
            )
        if window.floor is not None:
            clauses.append(active >= window.floor)
        return and_(true(), *clauses)

    async def window_floor(
        self, viewer: Viewer, *, as_of: datetime, upper: datetime | None, size: int
    ) -> datetime | None:
        """Where the window below `upper` ends: the last activity of its `size`-th candidate (None: no end).

        Walks `users.last_active_at` newest first in slices of people: an index-only lookup finds where a
        slice of `4 x size` people ends, then one query applies every rule to that activity range. It stops
        after `size` candidates, or after WALK_LIMIT_FACTOR x `size` people, whichever comes first: the work
        is bounded by the window size, never by how many people live nearby. None means the walk reached
        the oldest activity: the window takes everyone below `upper`.
        """
        rules = [*self._visible(viewer, as_of), *self._not_swiped_or_matched(viewer)]
        if upper is not None:
            rules.append(~self._boosted(as_of))  # the boosted were in the first window
        active = User.last_active_at
        slice_size, budget, found, below = size * 4, size * WALK_LIMIT_FACTOR, 0, upper
        while budget > 0:
            people = min(slice_size, budget)
            newer = [active.is_not(None)] if below is None else [active < below]
            # The slice's last activity: a range of about `people` people (ties at the edge all join it).
            edge = await self.session.scalar(
                select(active).where(*newer).order_by(active.desc()).offset(people - 1).limit(1)
            )
            in_slice = newer if edge is None else [*newer, active >= edge]
            passing = (
                await self.session.scalars(
                    select(active)
                    .select_from(Profile)
                    .join(User, User.id == Profile.user_id)
                    .where(*in_slice, *rules)
                    .order_by(active.desc())
                    .limit(size - found)
                )
            ).all()
            found += len(passing)
            if found >= size:
                return passing[-1]
            if edge is None:
                return None  # reached the oldest activity
            budget -= people
            below = edge
        return below

    async def candidates(
        self, viewer: Viewer, *, as_of: datetime, window: Window, limit: int, after: tuple[int, uuid.UUID] | None
    ) -> list[CandidateRow]:
        """One window's candidates, best first, strictly after `after` = (rank, id) when given.

        The first window is two index-friendly queries — the activity range, and everyone boosted outside
        it — merged by rank; later windows leave the boosted out (they were in the first).
        """
        in_range = self._active_in(window)
        if window.upper is None:
            rows = await self._ranked(viewer, as_of, window, in_range, limit, after)
            if window.floor is not None:
                outside = and_(
                    or_(User.last_active_at < window.floor, User.last_active_at.is_(None)), self._boosted(as_of)
                )
                rows += await self._ranked(viewer, as_of, window, outside, limit, after)
                rows.sort(key=lambda row: (-row.rank, row.user_id))
            return rows[:limit]
        return await self._ranked(viewer, as_of, window, and_(in_range, ~self._boosted(as_of)), limit, after)

    async def _ranked(
        self,
        viewer: Viewer,
        as_of: datetime,
        window: Window,
        where: ColumnElement[bool],
        limit: int,
        after: tuple[int, uuid.UUID] | None,
    ) -> list[CandidateRow]:
        rank = self._rank(viewer, as_of).label("rank")
        dist = self._distance(viewer).label("distance_km")
        query = (
            select(Profile, User.birthdate, dist, rank)
            .join(User, User.id == Profile.user_id)
            .where(*self._visible(viewer, as_of), *self._not_swiped_or_matched(viewer), where)
        )
        if after is not None:
            last_rank, last_id = after
            query = query.where(or_(rank < last_rank, and_(rank == last_rank, Profile.user_id > last_id)))
        query = query.order_by(rank.desc(), Profile.user_id).limit(limit)
        rows = (await self.session.execute(query)).all()
        return [
            CandidateRow(user_id=p.user_id, birthdate=b, profile=p, distance_km=float(d), rank=int(r), window=window)
            for p, b, d, r in rows
        ]

    async def reported_by(self, reporter: uuid.UUID, reported: uuid.UUID) -> bool:
        return bool(await self.session.scalar(select(~not_reported_by(reporter, literal(reported)))))

    async def matched_or_liked_me(self, me: uuid.UUID, other: uuid.UUID) -> bool:
        """A live match between us, or a like from them to me: their card opens whatever the preferences."""
        low, high = sorted((me, other))
        matched = exists().where(Match.user_low == low, Match.user_high == high, Match.unmatched_at.is_(None))
        liked = exists().where(Swipe.swiper_id == other, Swipe.target_id == me, Swipe.action.in_(LIKES))
        return bool(await self.session.scalar(select(or_(matched, liked))))

    async def account_row(self, viewer: Viewer, other_id: uuid.UUID, now: datetime) -> CandidateRow | None:
        """The other person if their account is live and has a profile (no preference rules)."""
        row = (
            await self.session.execute(
                select(Profile, User.birthdate)
                .join(User, User.id == Profile.user_id)
                .where(
                    Profile.user_id == other_id,
                    or_(
                        User.status == AccountStatus.active.value,
                        and_(User.status == AccountStatus.suspended.value, User.suspended_until <= now),
                    ),
                )
            )
        ).first()
        if row is None:
            return None
        profile, birthdate = row
        distance = geo.cell_distance_km(viewer.cell_lat, viewer.cell_lng, profile.cell_lat, profile.cell_lng)
        return CandidateRow(user_id=other_id, birthdate=birthdate, profile=profile, distance_km=distance, rank=0)

    async def card_row(self, viewer: Viewer, other_id: uuid.UUID, now: datetime) -> CandidateRow | None:
        """The other person if `viewer` may see their card: a compatible visible candidate (swiped or not)."""
        dist = self._distance(viewer).label("distance_km")
        row = (
            await self.session.execute(
                select(Profile, User.birthdate, dist)
                .join(User, User.id == Profile.user_id)
                .where(Profile.user_id == other_id, *self._visible(viewer, now))
            )
        ).first()
        if row is None:
            return None
        profile, birthdate, distance = row
        return CandidateRow(user_id=other_id, birthdate=birthdate, profile=profile, distance_km=float(distance), rank=0)
