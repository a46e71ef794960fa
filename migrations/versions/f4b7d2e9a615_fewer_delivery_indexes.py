"""issue 23: fewer index writes per event: the log's filter indexes partial, the created_at one gone

Revision ID: f4b7d2e9a615
Revises: c3e1a7f52b08
Create Date: 2026-12-06 10:50:00

A publish wrote every delivery into seven indexes besides the claim's, four
of them for the log's filters and the stats, and a delivery moved its
entries in two of those. Now:

- ix_deliveries_status (status, id, created_at) holds every state but
  delivered: the common filter walks the primary key newest first, and a
  delivery only takes its pending entry out. created_at is included so the
  "failed since" counts (redeliver, the banner, auto-disable) read the
  index alone, which is why ix_deliveries_created (created_at, status) can go.
- ix_deliveries_type (event_type, id) holds the rare error type only.
- ix_deliveries_test (id) holds the Test button's deliveries only.

Each partial index is built from the existing rows; the downgrade restores
the four full indexes.
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'f4b7d2e9a615'
down_revision = 'c3e1a7f52b08'
branch_labels = None
depends_on = None

# Written out here, not imported: a migration says what it did whatever the models say later.
UNDELIVERED_SQL = ("status = 'pending' OR status = 'retrying' OR status = 'failed'"
                   " OR status = 'cancelled' OR status = 'held'")
RARE_TYPE_SQL = "event_type = 'error'"
TEST_SQL = {"sqlite": "is_test = 1", "postgresql": "is_test"}


def upgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_created')
        batch_op.drop_index('ix_deliveries_test')
        batch_op.drop_index('ix_deliveries_type')
        batch_op.drop_index('ix_deliveries_status')
        batch_op.create_index('ix_deliveries_status', ['status', 'id', 'created_at'], unique=False,
                              sqlite_where=sa.text(UNDELIVERED_SQL), postgresql_where=sa.text(UNDELIVERED_SQL))
        batch_op.create_index('ix_deliveries_type', ['event_type', 'id'], unique=False,
                              sqlite_where=sa.text(RARE_TYPE_SQL), postgresql_where=sa.text(RARE_TYPE_SQL))
        batch_op.create_index('ix_deliveries_test', ['id'], unique=False,
                              sqlite_where=sa.text(TEST_SQL['sqlite']),
                              postgresql_where=sa.text(TEST_SQL['postgresql']))


def downgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_test')
        batch_op.drop_index('ix_deliveries_type')
        batch_op.drop_index('ix_deliveries_status')
        batch_op.create_index('ix_deliveries_status', ['status', 'id'], unique=False)
        batch_op.create_index('ix_deliveries_test', ['is_test', 'id'], unique=False)
        batch_op.create_index('ix_deliveries_type', ['event_type', 'id'], unique=False)
        batch_op.create_index('ix_deliveries_created', ['created_at', 'status'], unique=False)
