"""`kindred seed-demo`: realistic verified demo members with photos around a few cities, inserted in bulk.

Members share a small set of demo photos rendered once through the real photo pipeline (a photo's files are
deleted only with the last row using them), and one precomputed password hash.
"""

from __future__ import annotations

import io
import math
import random
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, insert, select

from kindred.kit import clock
from kindred.kit.db import Database
from kindred.kit.security import Passwords
from kindred.models import Photo, Profile, User
from kindred.profiles import geo
from kindred.settings import Settings

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "kindred demo password"  # development only: seed-demo refuses to run in production
CITIES = {
    "Berlin": (52.5200, 13.4050),
    "London": (51.5072, -0.1276),
    "New York": (40.7128, -74.0060),
    "São Paulo": (-23.5505, -46.6333),
    "Tokyo": (35.6762, 139.6503),
}
FIRST_NAMES = {
    "woman": ["Ana", "Lea", "Mia", "Sofia", "Emma", "Yuki", "Amara", "Chloe", "Nora", "Priya", "Laura", "Ines"],
    "man": ["Liam", "Noah", "Jonas", "Mateo", "Kenji", "Omar", "Lucas", "Felix", "Arjun", "Theo", "Samuel", "Rui"],
    "nonbinary": ["Alex", "Robin", "Sam", "Kai", "Jules", "River", "Charlie", "Noor", "Sasha", "Quinn"],
}
INTERESTS = [
    "hiking", "coffee", "jazz", "climbing", "cooking", "board games", "cycling", "photography", "yoga",
    "running", "museums", "travel", "sushi", "techno", "poetry", "gardening", "film", "dogs", "cats", "chess",
]  # fmt: skip
PROMPTS = [
    ("A perfect Sunday", ["Flea market, then a long lunch", "A hike and a swim in a lake", "Crosswords in bed"]),
    ("I'm weirdly good at", ["Parallel parking", "Remembering birthdays", "Finding the best dumplings in town"]),
    ("Looking for", ["Someone to try new restaurants with", "Good conversation and bad puns", "A climbing partner"]),
]
BIOS = [
    "New in town and looking for someone to show me their favourite places.",
    "Nurse by day, amateur baker by night. Will share croissants.",
    "Software person who would rather be outdoors.",
    "Teacher, bookworm, terrible at karaoke but keen anyway.",
    "Architect who notices every doorway. Ask me about brutalism.",
    "",
]


DEMO_PHOTOS = 8
PALETTES = [
    ((250, 200, 180), (120, 60, 90)), ((180, 220, 250), (40, 70, 130)), ((200, 240, 200), (50, 110, 70)),
    ((250, 230, 170), (150, 90, 30)), ((230, 200, 250), (90, 50, 140)), ((250, 190, 200), (140, 40, 60)),
    ((190, 240, 240), (30, 110, 120)), ((235, 235, 235), (70, 70, 80)),
]  # fmt: skip


def _demo_image(index: int) -> bytes:
    """An abstract portrait-shaped placeholder: a soft gradient with a head-and-shoulders silhouette."""
    from PIL import Image, ImageDraw, ImageFilter

    light, dark = PALETTES[index % len(PALETTES)]
    width, height = 1200, 1500
    img = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(img)
    for y in range(height):
        t = y / height
        draw.line([(0, y), (width, y)], fill=tuple(int(light[c] * (1 - t) + dark[c] * t) for c in range(3)))
    shade = tuple(max(0, c - 40) for c in dark)
    draw.ellipse((400, 380, 800, 820), fill=shade)
    draw.ellipse((220, 860, 980, 1700), fill=shade)
    img = img.filter(ImageFilter.GaussianBlur(6))
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


async def _store_demo_photos(settings: Settings) -> list[tuple[str, int, int]]:
    """Render the shared demo set through the real photo pipeline once; returns (storage_key, w, h)."""
    from kindred.kit.storage import create_storage
    from kindred.photos import imaging
    from kindred.photos.service import file_key

    storage = create_storage(settings)
    stored = []
    try:
        for index in range(DEMO_PHOTOS):
            rendered = imaging.render(_demo_image(index), "JPEG")
            key = f"demo{index:02d}"
            for rendition in rendered.renditions:
                await storage.put(file_key(key, rendition.name), rendition.data, imaging.OUTPUT_CONTENT_TYPE)
            large = next(r for r in rendered.renditions if r.name == "large")
            stored.append((key, large.width, large.height))
    finally:
        await storage.close()
    return stored


@dataclass(frozen=True)
class SeedResult:
    users: int
    demo_email: str
    demo_password: str


def _point_near(rng: random.Random, lat: float, lng: float, radius_km: float) -> tuple[float, float]:
    """A uniformly random point within `radius_km` of (lat, lng)."""
    distance = radius_km * math.sqrt(rng.random())
    bearing = rng.uniform(0, 2 * math.pi)
    dlat = distance / 111.0 * math.cos(bearing)
    dlng = distance / (111.0 * max(math.cos(math.radians(lat)), 0.01)) * math.sin(bearing)
    return round(lat + dlat, 6), round(lng + dlng, 6)


def _person(
    rng: random.Random, index: int, city: tuple[float, float], password_hash: str, today: date
) -> tuple[dict[str, Any], dict[str, Any]]:
    gender = rng.choices(["woman", "man", "nonbinary"], weights=[46, 46, 8])[0]
    interested_in = rng.choice(
        [["man"], ["woman"], ["woman", "man"], ["woman", "man", "nonbinary"], ["woman", "nonbinary"]]
    )
    age = rng.randint(21, 45)
    birthdate = today - timedelta(days=age * 365 + rng.randint(30, 330))
    lat, lng = _point_near(rng, *city, radius_km=20)
    user_id = uuid.uuid4()
    now = clock.now()
    user = {
        "id": user_id, "email": f"demo.member{index}@example.com", "password_hash": password_hash,
        "birthdate": birthdate, "role": "user", "tier": "free", "status": "active",
        "terms_version": "demo", "email_verified_at": now, "created_at": now - timedelta(days=rng.randint(1, 400)),
        "updated_at": now, "last_active_at": now - timedelta(hours=rng.randint(0, 24 * 40)),
    }  # fmt: skip
    cell_lat, cell_lng = geo.snap(lat, lng)
    profile = {
        "user_id": user_id, "display_name": rng.choice(FIRST_NAMES[gender]), "bio": rng.choice(BIOS),
        "gender": gender, "interested_in": interested_in, "age_min": max(18, age - rng.randint(4, 10)),
        "age_max": min(100, age + rng.randint(4, 12)), "max_distance_km": rng.choice([10, 25, 50, 100]),
        "interests": rng.sample(INTERESTS, rng.randint(0, 5)),
        "prompts": [{"question": q, "answer": rng.choice(a)} for q, a in rng.sample(PROMPTS, rng.randint(0, 2))],
        "height_cm": rng.randint(155, 195), "show_me": True, "incognito": False, "hide_presence": False,
        "verified": rng.random() < 0.3, "hidden_pending_review": False, "lat": lat, "lng": lng,
        "cell_lat": cell_lat, "cell_lng": cell_lng, "location_updated_at": now, "updated_at": now,
    }  # fmt: skip
    return user, profile


async def seed_demo(settings: Settings, users: int, *, if_empty: bool = False, seed: int = 7) -> SeedResult | None:
    """Insert `users` demo members plus the demo login; with `if_empty`, only into an empty database."""
    if settings.is_production:
        raise ValueError("seed-demo never runs in production")
    db = Database(settings)
    try:
        async with db.sessionmaker() as session:
            if if_empty and (await session.scalar(select(func.count()).select_from(User))):
                return None
        photos = await _store_demo_photos(settings)
        async with db.sessionmaker() as session, session.begin():
            rng = random.Random(seed)
            # One hash for everyone: hashing 20k passwords would take minutes and prove nothing.
            password_hash = Passwords(settings.argon2_memory_kib, settings.argon2_time_cost).hash_sync(DEMO_PASSWORD)
            today = clock.now().date()
            start = int(await session.scalar(select(func.count()).select_from(User)) or 0)
            cities = list(CITIES.values())
            batch_users: list[dict[str, Any]] = []
            batch_profiles: list[dict[str, Any]] = []
            batch_photos: list[dict[str, Any]] = []
            demo = await session.scalar(select(User.id).where(User.email == DEMO_EMAIL))
            if demo is None:
                user, profile = _person(rng, 0, cities[0], password_hash, today)
                user["email"] = DEMO_EMAIL
                profile.update(display_name="Demo", gender="woman", interested_in=["woman", "man", "nonbinary"],
                               age_min=18, age_max=100, max_distance_km=100)  # fmt: skip
                user["birthdate"] = today - timedelta(days=30 * 365)
                batch_users.append(user)
                batch_profiles.append(profile)
            for n in range(users):
                user, profile = _person(rng, start + n + 1, cities[n % len(cities)], password_hash, today)
                batch_users.append(user)
                batch_profiles.append(profile)
                for position, (key, width, height) in enumerate(rng.sample(photos, rng.randint(1, 3))):
                    batch_photos.append(
                        {"id": uuid.uuid4(), "user_id": user["id"], "position": position, "status": "approved",
                         "storage_key": key, "width": width, "height": height, "created_at": user["created_at"]}
                    )  # fmt: skip
                if len(batch_users) >= 2000:
                    await _flush(session, batch_users, batch_profiles, batch_photos)
            await _flush(session, batch_users, batch_profiles, batch_photos)
        return SeedResult(users=users, demo_email=DEMO_EMAIL, demo_password=DEMO_PASSWORD)
    finally:
        await db.dispose()


async def _flush(session: Any, *batches: list[dict[str, Any]]) -> None:
    """Bulk insert users, profiles and photos (in foreign-key order), then empty the batches."""
    for model, rows in zip((User, Profile, Photo), batches, strict=True):
        if rows:
            await session.execute(insert(model), rows)
            rows.clear()
