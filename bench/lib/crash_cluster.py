#!/usr/bin/env python3
"""The cluster mode of bench/crash.sh: bursts spread over several instances (standard library only).

Subcommands (crash_cluster.sh starts, reaps and restarts the instances; this file talks to them
and, in `burst`, sends the victim its SIGKILL):
  plan --seed S --rounds R --jobs J --instances N --max-delay-ms D
                                         print R lines `KILL_AFTER VICTIM DELAY_MS`: the 202 after
                                         which to kill, in [1, J-1]; the instance to kill, in
                                         [0, N-1]; how long it stays dead, in [0, D] — all from
                                         random.Random(S), so a seed replays them
  burst --url U --pid P --name NAME [--url ... ...] --victim I --kill-after K --n N
        --ids-out FILE --round R --results FILE [--conc C]
                                         send N async POSTs from C threads, request i to
                                         instance i mod N (the next live one once the victim is
                                         dead); right after the K-th 202 (all instances
                                         together) SIGKILL the victim's PID and go on with the
                                         others; append `id<TAB>round<TAB>instance` for every
                                         202 whose answer arrived whole
The check and the report are crash.py's (`check`, `report`). Every network operation goes to
the loopback URLs given, and every loop is bounded by a count and a deadline.
"""

import argparse
import collections
import http.client
import json
import os
import random
import signal
import threading
import time

import crash
from benchtool import split_url


def cmd_plan(args):
    if args.jobs < 2:
        crash.die("JOBS must be at least 2 (the kill point is between 1 and JOBS-1)")
    rng = random.Random(args.seed)
    for _ in range(args.rounds):
        kill_after = rng.randint(1, args.jobs - 1)
        victim = rng.randrange(args.instances)
        delay_ms = rng.randint(0, args.max_delay_ms)
        print(kill_after, victim, delay_ms)


def cmd_burst(args):
    targets = [split_url(url) for url in args.url]
    if not len(targets) == len(args.pid) == len(args.name):
        crash.die("give one --pid and one --name per --url")
    if not 0 <= args.victim < len(targets):
        crash.die(f"--victim must be in [0, {len(targets) - 1}]")
    if not 16 <= args.conc <= 32:
        crash.die("--conc must be between 16 and 32")
    for pid in args.pid:
        if not crash.is_hookrunner(pid):
            crash.die(f"pid {pid} is not a running hookrunner; not sending it a signal")
    body = json.dumps({"crash_test": True, "round": args.round}).encode()
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}

    lock = threading.Lock()
    state = {
        "next": 0,
        "accepted": [],          # (job id, instance index) of the 202s that arrived whole
        "killed": False,
        "kill_at_count": None,
        "kill_time": None,
        "sent": collections.Counter(),     # by instance index
        "other": collections.Counter(),    # non-202 answers, by status
        "failed": 0,             # requests whose answer did not arrive
        "failed_at_victim": 0,   # ... of which to the victim (in flight when it died)
        "errors": collections.Counter(),
    }
    started = time.monotonic()
    deadline = started + args.timeout

    def kill_locked():
        state["killed"] = True
        state["kill_at_count"] = len(state["accepted"])
        state["kill_time"] = time.monotonic() - started
        try:
            os.kill(args.pid[args.victim], signal.SIGKILL)
        except ProcessLookupError:
            pass

    def target_locked():
        """The instance for the next request: round-robin, skipping the victim once dead."""
        index = state["next"] % len(targets)
        state["next"] += 1
        if state["killed"] and index == args.victim:
            index = (index + 1) % len(targets)
        return index

    def worker():
        connections = {}
        while True:
            with lock:
                if sum(state["sent"].values()) >= args.n or time.monotonic() > deadline:
                    break
                index = target_locked()
                state["sent"][index] += 1
            host, port, path = targets[index]
            conn = connections.get(index)
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=args.request_timeout)
                connections[index] = conn
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                status = response.status
                if response.getheader("Connection", "").lower() == "close":
                    connections.pop(index).close()
            except (OSError, http.client.HTTPException) as error:
                connections.pop(index).close()
                with lock:
                    state["failed"] += 1
                    state["failed_at_victim"] += index == args.victim
                    state["errors"][type(error).__name__] += 1
                continue
            job_id = None
            if status == 202:
                try:
                    job_id = json.loads(data)["job_id"]
                except (ValueError, KeyError, TypeError):
                    job_id = None
            with lock:
                if job_id:
                    state["accepted"].append((job_id, index))
                    if not state["killed"] and len(state["accepted"]) >= args.kill_after:
                        kill_locked()
                else:
                    state["other"][str(status)] += 1
        for conn in connections.values():
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.timeout + args.request_timeout + 5)
    with lock:
        kill_late = not state["killed"]
        if kill_late:
            kill_locked()
        accepted = list(state["accepted"])
        by_instance = collections.Counter(index for _, index in accepted)
        record = {
            "kind": "burst",
            "round": args.round,
            "n": args.n,
            "conc": args.conc,
            "instances": len(targets),
            "victim": args.victim,
            "victim_name": args.name[args.victim],
            "kill_after": args.kill_after,
            "kill_at_count": state["kill_at_count"],
            "kill_late": kill_late,
            "kill_time_s": round(state["kill_time"], 3),
            "sent": sum(state["sent"].values()),
            "sent_by_instance": {args.name[i]: state["sent"][i] for i in range(len(targets))},
            "accepted": len(accepted),
            "accepted_by_instance": {args.name[i]: by_instance[i] for i in range(len(targets))},
            "accepted_after_kill": len(accepted) - state["kill_at_count"],
            "other": dict(state["other"]),
            "failed": state["failed"],
            "failed_at_victim": state["failed_at_victim"],
            "errors": dict(state["errors"]),
            "seconds": round(time.monotonic() - started, 3),
        }
    with open(args.ids_out, "a", encoding="utf-8") as f:
        for job_id, index in accepted:
            f.write(f"{job_id}\t{args.round}\t{args.name[index]}\n")
    crash.append_result(args.results, record)
    print(
        f"  burst: sent {record['sent']} {record['sent_by_instance']}, "
        f"202s {record['accepted']} {record['accepted_by_instance']} "
        f"(SIGKILL to {args.name[args.victim]} after 202 #{record['kill_at_count']} at "
        f"{record['kill_time_s']} s, {record['accepted_after_kill']} more 202s after it), "
        f"other answers {record['other'] or 0}, no answer {record['failed']} "
        f"({record['failed_at_victim']} at the victim)"
        + (" — KILLED LATE: the burst ended before the kill point" if kill_late else "")
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--jobs", type=int, required=True)
    p.add_argument("--instances", type=int, required=True)
    p.add_argument("--max-delay-ms", type=int, required=True)

    p = sub.add_parser("burst")
    p.add_argument("--url", action="append", required=True)
    p.add_argument("--pid", action="append", type=int, required=True)
    p.add_argument("--name", action="append", required=True)
    p.add_argument("--victim", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--conc", type=int, default=24)
    p.add_argument("--kill-after", type=int, required=True)
    p.add_argument("--ids-out", required=True)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--timeout", type=float, default=120, help="the whole burst, seconds")
    p.add_argument("--request-timeout", type=float, default=15)

    args = parser.parse_args()
    {"plan": cmd_plan, "burst": cmd_burst}[args.command](args)


if __name__ == "__main__":
    main()
