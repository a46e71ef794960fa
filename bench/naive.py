"""The naive baseline: one RQ job per event, what a Flask + RQ tutorial writes.

Enqueued as ``queue.enqueue(send_webhook, url, payload, event_id)`` and run by
``rq worker -w bench.naive.Worker``: that is RQ's default Worker, which forks a
work-horse per job, named through this module only so that the parent process
has imported ``requests`` and this job before it forks. Without that every
work-horse would import them again (~10 jobs/s instead of ~35/s here), and
the baseline would look worse than a tuned tutorial deployment.
"""

import requests
from rq import Worker  # noqa: F401  (RQ's default Worker, named here so the parent imports us)


def send_webhook(url: str, payload: dict, event_id: str) -> int:
    """POST the event; RQ marks the job failed if this raises."""
    response = requests.post(url, json=payload, headers={"webhook-id": event_id}, timeout=10)
    response.raise_for_status()
    return response.status_code
