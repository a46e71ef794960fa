"""users.session_token: what session and remember-me cookies carry; rotated at sign-out

Revision ID: e19a5e55104b
Revises: a16e0c3d5b21
Create Date: 2026-12-06 01:20:00

Added nullable, filled with a random token for every existing user, then
made NOT NULL and unique (batch mode: SQLite rebuilds the table for that).
Cookies issued before this migration carried the user's id and open
nothing afterwards: everyone signs in once more.
"""
import secrets

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'e19a5e55104b'
down_revision = 'a16e0c3d5b21'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_token', sa.String(length=64), nullable=True))

    users = sa.table('users', sa.column('id', sa.Integer), sa.column('session_token', sa.String))
    connection = op.get_bind()
    for (user_id,) in connection.execute(sa.select(users.c.id)).all():
        connection.execute(users.update().where(users.c.id == user_id)
                           .values(session_token=secrets.token_urlsafe(32)))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('session_token', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index(batch_op.f('ix_users_session_token'), ['session_token'], unique=True)


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_session_token'))
        batch_op.drop_column('session_token')
