"""The peer: what a Flask user would otherwise pick, Celery with a task per event.

``celery -A bench.celery_peer worker --pool threads -c 8`` (or ``--pool
prefork -c 2``), with the broker in ``BENCH_CELERY_BROKER`` (the bench's
Redis) and the signing secret in ``BENCH_CELERY_SECRET``. Each task POSTs
one envelope through a ``requests.Session`` (one per thread, kept alive),
signed with the public ``standardwebhooks`` package, as a careful tutorial
deployment would. No result backend: the bench counts arrivals.
"""

import os
import threading

import requests
from celery import Celery
from standardwebhooks import Webhook

app = Celery("bench_peer", broker=os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True, worker_prefetch_multiplier=4)

_local = threading.local()


def _session() -> requests.Session:
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


@app.task(name="bench.send_webhook")
def send_webhook(url: str, body: str, msg_id: str, timestamp: int) -> int:
    """POST the signed envelope; Celery marks the task failed if this raises."""
    from datetime import datetime, timezone

    webhook = Webhook(os.environ["BENCH_CELERY_SECRET"])
    signature = webhook.sign(msg_id, datetime.fromtimestamp(timestamp, tz=timezone.utc), body)
    response = _session().post(url, data=body.encode(), timeout=10, headers={
        "Content-Type": "application/json", "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp), "webhook-signature": signature})
    response.raise_for_status()
    return response.status_code
