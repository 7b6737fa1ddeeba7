"""ORM classes, one module per table group; importing this registers every table on Base.metadata."""

from kindred.models.audit import AuditEntry
from kindred.models.auth import AuthSession, EmailToken, RefreshToken, TokenPurpose
from kindred.models.base import Base, utcnow
from kindred.models.users import AccountStatus, BannedEmail, Profile, Role, Tier, User

__all__ = [
    "AccountStatus",
    "AuditEntry",
    "AuthSession",
    "BannedEmail",
    "Base",
    "EmailToken",
    "Profile",
    "RefreshToken",
    "Role",
    "Tier",
    "TokenPurpose",
    "User",
    "utcnow",
]
