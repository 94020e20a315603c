"""The Celery side of `npm run bench:celery` (bench/celery.ts): one Celery app, two tasks.

Each task's first statement reads the wall clock, so the caller can compute `.delay()` → task
body starts with the same clock on both sides (time.time_ns() in both processes of one machine).
Each task is routed to its own queue, consumed by one worker: `started_prefork` by a prefork
worker with concurrency 1 (Celery's default pool), `started_solo` by a solo-pool worker (the task
runs in the process that reads the broker, without the hand-over to a child process).
"""

import os
import time

from celery import Celery

app = Celery("pht_bench", broker=os.environ["PHT_BENCH_BROKER"], backend="rpc://")
app.conf.update(
    task_routes={
        "tasks.started_prefork": {"queue": "pht-bench-prefork"},
        "tasks.started_solo": {"queue": "pht-bench-solo"},
    },
    # Celery 5 warns at start about this setting's future default; the benchmark sets it.
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task
def started_prefork():
    return time.time_ns()


@app.task
def started_solo():
    return time.time_ns()
