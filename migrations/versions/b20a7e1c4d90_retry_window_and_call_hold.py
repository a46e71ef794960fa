"""issue 20: retry window; a retrying head holds its call for a while only; e-mail alerts

Revision ID: b20a7e1c4d90
Revises: 89b0e37a3dd0
Create Date: 2026-12-06 01:40:00

webhook_settings.retry_window is the panel's "Keep retrying for" (40m, 1d,
3d; existing rows keep the seed's 40 minutes). deliveries.holds_call_until
says until when a retrying head keeps its call's later events waiting; the
claim finds heads past it through the small partial index
ix_deliveries_let_go. Existing rows get NULL: they hold as before until
their next failure sets it. The alerts table is the outbox of alert
e-mails (one row per alert and recipient, unique key so that workers
deciding at once write it once); users.alerts_opt_out is each admin's own
choice.
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'b20a7e1c4d90'
down_revision = '89b0e37a3dd0'
branch_labels = None
depends_on = None

LET_GO_SQL = "status IN ('pending', 'retrying') AND holds_call_until IS NOT NULL"


def upgrade():
    with op.batch_alter_table('webhook_settings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retry_window', sa.String(length=8), server_default='40m', nullable=False))
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('holds_call_until', sa.DateTime(), nullable=True))
        batch_op.create_index('ix_deliveries_let_go', ['holds_call_until'], unique=False,
                              sqlite_where=sa.text(LET_GO_SQL), postgresql_where=sa.text(LET_GO_SQL))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('alerts_opt_out', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        'alerts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=400), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('recipient', sa.String(length=254), nullable=False),
        sa.Column('subject', sa.String(length=300), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('sent_at', sa.DateTime(), nullable=True),
        sa.Column('claimed_until', sa.DateTime(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key'),
    )


def downgrade():
    op.drop_table('alerts')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('alerts_opt_out')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_let_go')
        batch_op.drop_column('holds_call_until')
    with op.batch_alter_table('webhook_settings', schema=None) as batch_op:
        batch_op.drop_column('retry_window')
