"""idempotency keys

Revision ID: a7c3e1f20b11
Revises: 16e95d6662c0
Create Date: 2026-11-25 16:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kindred.models.base

revision: str = "a7c3e1f20b11"
down_revision: str | None = "16e95d6662c0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("lock_token", sa.Uuid(), nullable=False),
        sa.Column("locked_at", kindred.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", kindred.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", kindred.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_content_type", sa.String(length=255), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_idempotency_keys_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "key", name=op.f("pk_idempotency_keys")),
    )
    # For the operator's purge of expired keys (docs/operations.md): DELETE ... WHERE created_at < cutoff.
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index("ix_idempotency_keys_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_idempotency_keys_created_at")

    op.drop_table("idempotency_keys")
