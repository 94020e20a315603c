"""The caller's side of `npm run bench:celery`: takes one sample per command from stdin.

A line "prefork" or "solo" on stdin makes one sample: the clock reading just before `.delay()`,
the task's own reading at its start (its return value, sent back through the rpc:// result
backend) and the reading when `.get()` returns. It answers one JSON line on stdout:
{"pool": ..., "startNs": delay → task start, "roundTripNs": delay → result in hand}.
A line "ready" answers {"ready": true} once both workers have run a task (start-up check).
"""

import json
import sys
import time

from tasks import started_prefork, started_solo

TASKS = {"prefork": started_prefork, "solo": started_solo}


def sample(pool):
    task = TASKS[pool]
    before = time.time_ns()
    result = task.delay()
    started = result.get(timeout=30)
    after = time.time_ns()
    return {"pool": pool, "startNs": started - before, "roundTripNs": after - before}


def main():
    for line in sys.stdin:
        command = line.strip()
        if command == "ready":
            # The first task of each worker may wait for the worker's start: a longer timeout.
            for task in TASKS.values():
                task.delay().get(timeout=120)
            answer = {"ready": True}
        elif command in TASKS:
            answer = sample(command)
        else:
            answer = {"error": "unknown command %r" % command}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
