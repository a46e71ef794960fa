"""attempts keep the URL they were sent to

Revision ID: a16e0c3d5b21
Revises: 7c1f0e2a9b44
Create Date: 2026-12-06 01:40:00

The delivery detail shows each request as sent: its destination (the saved
URL at that moment) beside every header on the wire. Rows from before this
revision have no URL (NULL). Adding a nullable column rewrites nothing.
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'a16e0c3d5b21'
down_revision = '7c1f0e2a9b44'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('url', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_column('url')
