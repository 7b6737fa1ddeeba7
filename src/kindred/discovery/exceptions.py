"""Discovery failures."""

from __future__ import annotations

from kindred.kit.errors import Conflict, NotFound


class LocationRequired(Conflict):
    code, message = "location_required", "Share your location to see people near you."


class UserNotFound(NotFound):
    code, message = "user_not_found", "User not found."
