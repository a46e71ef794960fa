"""The connection pool hands back the connection used last (see models.init_app)."""

from models import db


def test_after_a_burst_one_thread_keeps_reusing_one_connection(app):
    # Three connections out at once (a burst of publishing threads), then one
    # thread alone: it gets the same, warm connection every time instead of
    # rotating through all three.
    with app.app_context():
        held = [db.engine.raw_connection() for _ in range(3)]
        for connection in held:
            connection.close()
        used = set()
        for _ in range(3):
            connection = db.engine.raw_connection()
            used.add(id(connection.dbapi_connection))
            connection.close()
    assert len(used) == 1
