"""attempt roll-ups: per-minute counts by outcome and latency buckets, for the stats

Revision ID: 89b0e37a3dd0
Revises: 3f9a2c6d1b70
Create Date: 2026-12-06 01:50:00

The log's stats (success rate, p50/p95, the 24 h / 7 d chart) read one row
per minute instead of every attempt of the window (models/rollups.py). The
rows are built here from the attempts kept, in one pass: each attempt under
the state it led to, read back from its delivery (tasks.rollups.rebuild).
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '89b0e37a3dd0'
down_revision = '3f9a2c6d1b70'
branch_labels = None
depends_on = None

OUTCOMES = ('delivered', 'retrying', 'failed', 'cancelled')
LATENCY_BUCKETS = 80


def upgrade():
    op.create_table(
        'attempt_rollups',
        sa.Column('minute', sa.Integer(), autoincrement=False, nullable=False),
        *(sa.Column(name, sa.Integer(), server_default='0', nullable=False)
          for name in OUTCOMES + tuple(f'lat_{i:02d}' for i in range(LATENCY_BUCKETS))),
        sa.PrimaryKeyConstraint('minute'),
    )
    # The app's own tally, so old and new rows are bucketed alike.
    from tasks.rollups import rebuild
    rebuild(op.get_bind())


def downgrade():
    op.drop_table('attempt_rollups')
