"""`flask db upgrade` builds exactly the schema the models describe."""

import os

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from models import db
from tests.support.migrations import upgrade_from_empty


def test_migrations_match_models(app):
    with app.app_context():
        upgrade_from_empty()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == [], "models changed without a migration: flask db migrate -m '...'"


def _delivery_indexes(conn) -> dict[str, str]:
    """{name: definition} of the deliveries table's own indexes, as the database reports them."""
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                                    " AND tbl_name = 'deliveries' AND sql IS NOT NULL")
    else:
        rows = conn.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'deliveries'"
                                    " AND schemaname = current_schema() AND left(indexname, 3) = 'ix_'")
    return dict(rows.all())


def test_fewer_delivery_indexes_down_and_up(app):
    """f4b7d2e9a615: the filter indexes partial and ix_deliveries_created gone; the downgrade brings back all four."""
    directory = os.path.join(app.root_path, "migrations")
    with app.app_context():
        upgrade_from_empty()
        with db.engine.connect() as conn:
            after = _delivery_indexes(conn)
        assert "ix_deliveries_created" not in after
        assert "WHERE" in after["ix_deliveries_test"] and "is_test" in after["ix_deliveries_test"]
        assert "'error'" in after["ix_deliveries_type"]
        assert "'failed'" in after["ix_deliveries_status"] and "'delivered'" not in after["ix_deliveries_status"]
        downgrade(directory=directory, revision="c3e1a7f52b08")
        with db.engine.connect() as conn:
            before = _delivery_indexes(conn)
        for name in ("ix_deliveries_created", "ix_deliveries_status", "ix_deliveries_test", "ix_deliveries_type"):
            assert "WHERE" not in before[name].upper(), before[name]
        upgrade(directory=directory)
        with db.engine.connect() as conn:
            assert _delivery_indexes(conn) == after
