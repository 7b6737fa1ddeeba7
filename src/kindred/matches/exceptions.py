"""Match failures."""

from __future__ import annotations

from kindred.kit.errors import NotFound


class MatchNotFound(NotFound):
    """Unknown, not the caller's, or already unmatched: one answer so strangers cannot probe ids."""

    code, message = "match_not_found", "Match not found."
