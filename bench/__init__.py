"""Hookline's benchmark: ``python -m bench`` (``make bench``); never run by the tests.

Modules: services (private Redis, receiver processes, workers, databases),
receiver (the asyncio receiver each receiver process runs), client (one
raw-ceiling POST loop), naive (the one-job-per-event baseline's job),
harness (the Context, the bench's app and workers, the call events and
the checks of what arrived), scenarios (one function per measured line),
report (the table and results.json).
"""
