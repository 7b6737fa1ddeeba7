"""Request and response bodies for the caller's own profile and location."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# A Literal, not the Gender enum: strict models refuse a JSON string for an enum field.
Gender = Literal["woman", "man", "nonbinary"]

Text50 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
Interest = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
Age = Annotated[int, Field(ge=18, le=100)]


class Prompt(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    question: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    answer: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ProfileUpdate(BaseModel):
    """Every field optional; only the fields sent change. Anything else (role, tier, email...) is a 422."""

    model_config = ConfigDict(extra="forbid", strict=True)

    display_name: Text50 | None = None
    bio: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None
    gender: Gender | None = None
    interested_in: Annotated[list[Gender], Field(max_length=3)] | None = None
    age_min: Age | None = None
    age_max: Age | None = None
    max_distance_km: Annotated[int, Field(ge=1, le=500)] | None = None
    interests: Annotated[list[Interest], Field(max_length=10)] | None = None
    prompts: Annotated[list[Prompt], Field(max_length=3)] | None = None
    height_cm: Annotated[int, Field(ge=100, le=250)] | None = None
    job_title: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    school: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    show_me: bool | None = None
    incognito: bool | None = None
    hide_presence: bool | None = None


# Fields a client may clear by sending null; the rest must have a value when sent.
NULLABLE_FIELDS = frozenset({"gender", "height_cm", "job_title", "school"})


class LocationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
    lng: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]


class ProfileRead(BaseModel):
    display_name: str
    bio: str
    gender: Gender | None
    interested_in: list[Gender]
    age_min: int
    age_max: int
    max_distance_km: int
    interests: list[str]
    prompts: list[Prompt]
    height_cm: int | None
    job_title: str | None
    school: str | None
    show_me: bool
    incognito: bool
    hide_presence: bool
    has_location: bool
