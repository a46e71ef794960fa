"""claim reads open rows through a partial index; stats read attempts from an index

Revision ID: 7c1f0e2a9b44
Revises: d512f89c7361
Create Date: 2026-11-23 13:20:00

The drain's claim now looks up each call's first open delivery; a partial
index on open rows (call_id, id) serves it and replaces the old
(status, due_at, id) index, which only the former claim used. The stats'
counts and percentiles over the last 24 h of attempts read
(started_at, ok, duration_ms) without touching the table.
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '7c1f0e2a9b44'
down_revision = 'd512f89c7361'
branch_labels = None
depends_on = None

OPEN_SQL = "status IN ('pending', 'retrying')"


def upgrade():
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_attempts_started')
        batch_op.create_index('ix_attempts_window', ['started_at', 'ok', 'duration_ms'], unique=False)

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_due')
        batch_op.create_index('ix_deliveries_open_call', ['call_id', 'id'], unique=False,
                              sqlite_where=sa.text(OPEN_SQL), postgresql_where=sa.text(OPEN_SQL))


def downgrade():
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_attempts_window')
        batch_op.create_index('ix_attempts_started', ['started_at'], unique=False)

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_open_call')
        batch_op.create_index('ix_deliveries_due', ['status', 'due_at', 'id'], unique=False)
