"""What a Hookline worker agrees to run: JSON jobs naming Hookline's own functions.

Whoever can write to Redis can put a job on the queue. With RQ's default
pickle serializer, merely reading such a job runs code of the writer's
choosing, in the process that holds the database credentials and the
encryption key; with any serializer, RQ would import and call whatever
function, callback or job webhook the job names. So Hookline's queue and
worker use ``rq.serializers.JSONSerializer`` (reading a job is then only
``json.loads``), and :class:`HooklineJob` runs a job only when its function
is on :data:`ALLOWED_FUNCTIONS`, checked before anything is imported; it
never runs callbacks nor sends RQ's job webhooks (Hookline sets none).
"""

from rq.exceptions import DeserializationError
from rq.job import Job
from rq.serializers import JSONSerializer

#: The one serializer of Hookline's queue, for the worker and every enqueue.
SERIALIZER = JSONSerializer

#: Dotted paths a Hookline worker runs: the drain and the engine's publish (one event or a batch).
ALLOWED_FUNCTIONS = frozenset({"tasks.drain.drain", "tasks.publish_event", "tasks.publish_events"})


class JobRefused(Exception):
    """A job on Hookline's queue that a Hookline worker will not run."""


def refusal(job: Job) -> str | None:
    """Why ``job`` may not run (a sentence naming it), or None when it may.

    Reads only the job's JSON data; imports nothing.
    """
    try:
        name, instance = job.func_name, job.instance
    except DeserializationError:
        return (f"job {job.id} is not JSON (pickled?); Hookline's queue takes only jobs "
                "enqueued with rq.serializers.JSONSerializer")
    if instance is not None or name not in ALLOWED_FUNCTIONS:
        return (f"job {job.id} names {name!r}, which is not one of Hookline's jobs "
                f"({', '.join(sorted(ALLOWED_FUNCTIONS))})")
    return None


class HooklineJob(Job):
    """An RQ job that runs only an allowed function, with no callbacks and no job webhooks."""

    def perform(self):
        """Run the job's function if :func:`refusal` allows it, else raise JobRefused."""
        reason = refusal(self)
        if reason:
            raise JobRefused(reason)
        return super().perform()

    # A job's callbacks are dotted paths RQ imports and calls; Hookline sets none.
    @property
    def success_callback(self):
        return None

    @property
    def failure_callback(self):
        return None

    @property
    def stopped_callback(self):
        return None

    def send_webhooks(self, status, *, exc_string=None) -> None:
        """RQ's job webhooks would POST anywhere a job says: Hookline sends none."""
