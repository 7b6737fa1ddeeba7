"""ORM classes, one module per table group; importing this registers every table on Base.metadata."""

from kindred.models.audit import AuditEntry
from kindred.models.auth import AuthSession, EmailToken, RefreshToken, TokenPurpose
from kindred.models.base import Base, utcnow
from kindred.models.chat import Message
from kindred.models.dating import Boost, Match, Photo, PhotoStatus, Swipe, SwipeAction
from kindred.models.idempotency import IdempotencyKey, IdempotencyState
from kindred.models.safety import Block, ModerationItem, Report, ReportReason
from kindred.models.users import AccountStatus, BannedEmail, Gender, Profile, Role, Tier, User

__all__ = [
    "AccountStatus",
    "AuditEntry",
    "AuthSession",
    "BannedEmail",
    "Base",
    "Block",
    "Boost",
    "EmailToken",
    "Gender",
    "IdempotencyKey",
    "IdempotencyState",
    "Match",
    "Message",
    "ModerationItem",
    "Photo",
    "PhotoStatus",
    "Profile",
    "RefreshToken",
    "Report",
    "ReportReason",
    "Role",
    "Swipe",
    "SwipeAction",
    "Tier",
    "TokenPurpose",
    "User",
    "utcnow",
]
