"""discovery window indexes: users.last_active_at and profiles.boost_until

Revision ID: c9e5a3b4d033
Revises: b8d4f2a31c22
Create Date: 2026-11-25 16:50:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c9e5a3b4d033"
down_revision: str | None = "b8d4f2a31c22"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_last_active_at"), ["last_active_at"], unique=False)
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_profiles_boost_until"), ["boost_until"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_profiles_boost_until"))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_last_active_at"))
