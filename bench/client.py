"""One raw-ceiling client: ``python -m bench.client URL START STOP`` prints how many it sent.

A keep-alive ``requests.Session`` POSTing the ~400-byte body with headers like
Hookline's, as fast as it can between START and STOP (Unix times, so several
clients begin and end together). A process of its own, as a worker is.
"""

import sys
import time

import requests

from bench.scenarios import FAKE_SIGNATURE, ceiling_body


def post_loop(url: str, start_at: float, stop_at: float) -> int:
    body = ceiling_body()
    session = requests.Session()
    headers = {"Content-Type": "application/json", "User-Agent": "Hookline/0.1.0",
               "webhook-timestamp": "1700000000", "webhook-signature": FAKE_SIGNATURE,
               "X-Api-Key": "sk_bench_0123456789"}
    session.post(url, data=body, headers={**headers, "webhook-id": "warmup"})  # connect first
    while time.time() < start_at:
        time.sleep(0.001)
    sent = 0
    while time.time() < stop_at:
        session.post(url, data=body, headers={**headers, "webhook-id": f"msg_ceiling{sent}"})
        sent += 1
    return sent


if __name__ == "__main__":
    print(post_loop(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
