"""Profile and location failures."""

from __future__ import annotations

from kindred.kit.errors import Forbidden, ValidationFailed


class PremiumRequired(Forbidden):
    code, message = "premium_required", "This needs Kindred Premium."


class ImplausibleLocation(ValidationFailed):
    code, message = "implausible_location", "That location change is not possible in the time since the last one."


class InvalidPreferences(ValidationFailed):
    code, message = "validation_error", "age_min must not be greater than age_max."
