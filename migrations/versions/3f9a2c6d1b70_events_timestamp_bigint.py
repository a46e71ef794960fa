"""events.timestamp_utc holds signed 64 bits on PostgreSQL (BIGINT)

Revision ID: 3f9a2c6d1b70
Revises: e19a5e55104b
Create Date: 2026-12-06 01:30:00

Engines send millisecond timestamps (1760084505000), which overflow
PostgreSQL's INTEGER. On PostgreSQL this ALTER rewrites the events table
once (INTEGER -> BIGINT changes the row format), holding an ACCESS EXCLUSIVE
lock meanwhile: publishes wait for it, so run it in a quiet moment on a big
outbox. SQLite's INTEGER is already 64 bits: nothing changes there.
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '3f9a2c6d1b70'
down_revision = 'e19a5e55104b'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column('events', 'timestamp_utc', type_=sa.BigInteger(), existing_type=sa.Integer(),
                        existing_nullable=False)


def downgrade():
    # Fails (integer out of range) while a row holds a timestamp beyond 2^31 - 1.
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column('events', 'timestamp_utc', type_=sa.Integer(), existing_type=sa.BigInteger(),
                        existing_nullable=False)
