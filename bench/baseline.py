"""Line 8: CPU per event against the code issue 23 measured, in the same run, on the same receiver.

Issue 23 asks for "CPU per event, all but the receiver, ≤ 0.45 ms (0.92–1.24
now)": a time, measured on the box of the day. This box's speed moves by
1.5-2× between hours (the same code's CPU per event with it: bench/README),
so a time measured today cannot be set against a time measured then. This
line measures the cut instead: line 3's scenario (one warm worker, one
publishing loop, M events of C calls, timed to the receiver's last arrival)
for the tree the issue measured (``--baseline-ref``, 0a576cf) and for this
working tree, interleaved in rounds (base, today, base, today, ...), each
in processes of its own (bench/baseline_child.py). The line is the median
of the rounds' ratios today ÷ base; its target is the issue's own cut,
0.45 ms over what the issue measured on that database: 0.92 ms on SQLite,
1.02 on PostgreSQL (one worker each).
"""

import io
import json
import statistics
import subprocess
import sys
import tarfile
from pathlib import Path

from bench.services import ROOT

#: The commit issue 23's figures were measured on.
ISSUE_REF = "0a576cf"
#: 0.45 ms over the issue's measured CPU per event with one worker, per database.
TARGETS = {"sqlite": 0.45 / 0.92, "postgresql": 0.45 / 1.02}


def extract(ref: str, into: Path) -> Path | None:
    """The tree of commit ``ref`` written out under ``into``, once a run (None when this clone lacks it)."""
    tree = into / f"baseline-{ref}"
    if tree.exists():
        return tree
    done = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True)
    if done.returncode:
        return None
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(tree, filter="data")
    return tree


def one_run(tree: Path, database_url: str | None, tag: str, ctx, m: int, calls: int) -> dict:
    """Line 3's scenario on ``tree`` (bench/baseline_child.py); its figures, or the error it ended with."""
    args = {"tree": str(tree), "database_url": database_url, "redis_url": ctx.redis.url,
            "receiver_url": ctx.receiver.base_url, "receiver_logdir": str(ctx.receiver.logdir),
            "receiver_pids": [p.pid for p in ctx.receiver.procs], "workdir": str(ctx.logdir),
            "events": m, "calls": calls, "tag": tag}
    ctx.logdir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "bench.baseline_child", json.dumps(args)], cwd=ROOT,
                          capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def run(ctx, database_url: str | None, ref: str, rounds: int, m: int, calls: int, say) -> dict:
    """Interleaved rounds of line 3's scenario for ``ref`` and this tree on one database; the ratios."""
    kind = "postgresql" if database_url else "sqlite"
    tree = extract(ref, ctx.logdir.parent)
    if tree is None:
        return {"ref": ref, "skipped": f"commit {ref} is not in this clone (a shallow clone?)"}
    runs: dict[str, list] = {"base": [], "today": []}
    for r in range(rounds):
        for name, where in (("base", tree), ("today", ROOT)):
            say(f"[{kind}] line 8, round {r + 1} of {rounds}: line 3's scenario on {ref if name == 'base' else 'this tree'}")
            runs[name].append(one_run(where, database_url, f"{kind}-{name}-{r}", ctx, m, calls))
    pairs = [(b, t) for b, t in zip(runs["base"], runs["today"]) if "error" not in b and "error" not in t]
    ratios = [t["cpu_ms_per_event"] / b["cpu_ms_per_event"] for b, t in pairs]
    return {"ref": ref, "kind": kind, "target": TARGETS[kind], "runs": runs, "ratios": ratios,
            "ratio": statistics.median(ratios) if ratios else None}
