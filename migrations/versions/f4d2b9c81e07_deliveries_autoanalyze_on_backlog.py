"""issue 23: PostgreSQL re-analyzes deliveries after 10,000 changed rows, not 10% of the table

Revision ID: f4d2b9c81e07
Revises: f4b7d2e9a615
Create Date: 2026-12-06 10:30:00

The claim's plan (tasks.heads) rests on the planner's idea of how many
deliveries are open. A log of a million delivered rows analyzed while none
was open says "about none"; a backlog (after a receiver outage, or events
published faster than they drain) then gets plans that read every open row
once per candidate. By default autovacuum analyzes a table once 10% of it
has changed: 100,000 rows of a million, tens of thousands of events. With
these settings it does so after 10,000 changed rows (a few thousand events),
within a minute (autovacuum_naptime) of a backlog building; an ANALYZE of
deliveries samples 30,000 rows, a fraction of a second. Vacuum thresholds
are left as they are. SQLite has no autovacuum: nothing to do there.
"""
from alembic import op

# revision identifiers, used by Alembic.
revision = 'f4d2b9c81e07'
down_revision = 'f4b7d2e9a615'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries SET (autovacuum_analyze_scale_factor = 0,"
                   " autovacuum_analyze_threshold = 10000)")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold)")
