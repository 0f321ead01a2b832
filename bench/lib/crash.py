#!/usr/bin/env python3
"""Helpers for bench/crash.sh, the crash test (Python standard library only).

Subcommands (crash.sh starts and reaps the server; this file only talks to it and, in `burst`,
sends it the SIGKILL):
  freeport                               print a free TCP port on 127.0.0.1
  plan --seed S --rounds R --burst B     print R kill points, one a line, each in [1, B-1],
                                         from random.Random(S), so a seed replays its kill points
  wait URL --pid PID [--timeout S]       wait until GET URL answers 200; exit 1 on timeout, 2 if
                                         PID exits first
  burst URL --pid PID --n N --kill-after K --ids-out FILE --round R --results FILE [--conc C]
                                         send N async POSTs from C threads (keep-alive
                                         http.client connections); right after the K-th 202
                                         send SIGKILL to PID and stop sending; append the job id
                                         of every 202 whose answer arrived whole to FILE
  check BASE_URL --ids FILE --done FILE --round R --results FILE [--deadline S] [--strict]
                                         GET /jobs/{id} for every recorded id until each is
                                         found and final, or is 404 (lost), or the deadline
                                         passes; count the ids that done.txt holds twice; with
                                         --strict, a job that ended other than succeeded or
                                         interrupted, or succeeded without its line in done.txt,
                                         fails the round too
  report --results FILE                  print the per-round table and totals, then
                                         `N passed, M failed`; exit 1 if a round failed
Every network operation goes to the URL given, which must be on the loopback, and every loop is
bounded by a count and a deadline.
"""

import argparse
import collections
import http.client
import json
import os
import random
import signal
import sys
import threading
import time

# The loopback guard and the free-port finder are benchtool's (this directory is on sys.path when
# this file is run as a script).
import benchtool
from benchtool import split_url

FINAL_EXCLUDED = ("queued", "running")
EXPECTED_FINAL = ("succeeded", "interrupted")


def die(message):
    print(f"crash.py: {message}", file=sys.stderr)
    sys.exit(1)


def append_result(path, record):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def process_alive(pid):
    """True while PID exists and is not a zombie (a SIGKILLed child stays a zombie until reaped)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return False
    # The state is the first field after the parenthesised command name.
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
    return state not in ("Z", "X")


def is_hookrunner(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"hookrunner" in f.read()
    except OSError:
        return False


# --- freeport / plan / wait -------------------------------------------------------------------------

def cmd_freeport(_args):
    benchtool.cmd_freeport([])


def cmd_plan(args):
    if args.burst < 2:
        die("BURST must be at least 2 (the kill point is between 1 and BURST-1)")
    rng = random.Random(args.seed)
    for _ in range(args.rounds):
        print(rng.randint(1, args.burst - 1))


def cmd_wait(args):
    host, port, path = split_url(args.url)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not process_alive(args.pid):
            sys.exit(2)
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(1)


# --- burst --------------------------------------------------------------------------------------------

def cmd_burst(args):
    host, port, path = split_url(args.url)
    if not 16 <= args.conc <= 32:
        die("--conc must be between 16 and 32")
    if not is_hookrunner(args.pid):
        die(f"pid {args.pid} is not a running hookrunner; not sending it a signal")
    body = json.dumps({"crash_test": True, "round": args.round}).encode()
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}

    lock = threading.Lock()
    state = {
        "next": 0,            # index of the next request to send
        "accepted": [],       # job ids of the 202s whose answer arrived whole
        "killed": False,
        "kill_at_count": None,  # 202s counted when the SIGKILL was sent
        "kill_time": None,
        "sent": 0,
        "other": collections.Counter(),  # non-202 answers, by status
        "failed": 0,          # requests whose answer did not arrive (reset, refused, timeout)
        "failed_before_kill": 0,
        "errors": collections.Counter(),
    }
    started = time.monotonic()
    deadline = started + args.timeout

    def kill_locked():
        # Called with the lock held, once.
        state["killed"] = True
        state["kill_at_count"] = len(state["accepted"])
        state["kill_time"] = time.monotonic() - started
        try:
            os.kill(args.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def worker():
        conn = None
        while True:
            with lock:
                if state["killed"] or state["next"] >= args.n or time.monotonic() > deadline:
                    break
                state["next"] += 1
                state["sent"] += 1
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=args.request_timeout)
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                status = response.status
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as error:
                if conn is not None:
                    conn.close()
                conn = None
                with lock:
                    state["failed"] += 1
                    state["errors"][type(error).__name__] += 1
                    if not state["killed"]:
                        state["failed_before_kill"] += 1
                continue
            job_id = None
            if status == 202:
                try:
                    job_id = json.loads(data)["job_id"]
                except (ValueError, KeyError, TypeError):
                    job_id = None
            with lock:
                if job_id:
                    state["accepted"].append(job_id)
                    if not state["killed"] and len(state["accepted"]) >= args.kill_after:
                        kill_locked()
                else:
                    state["other"][str(status)] += 1
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.timeout + args.request_timeout + 5)
    with lock:
        # Every request ended without reaching the kill point (too few 202s): kill now, so the
        # round still crashes the server, and say so.
        kill_late = not state["killed"]
        if kill_late:
            kill_locked()
        accepted = list(state["accepted"])
        record = {
            "kind": "burst",
            "round": args.round,
            "n": args.n,
            "conc": args.conc,
            "kill_after": args.kill_after,
            "kill_at_count": state["kill_at_count"],
            "kill_late": kill_late,
            "kill_time_s": round(state["kill_time"], 3),
            "sent": state["sent"],
            "accepted": len(accepted),
            "accepted_after_kill": len(accepted) - state["kill_at_count"],
            "other": dict(state["other"]),
            "failed": state["failed"],
            "failed_before_kill": state["failed_before_kill"],
            "errors": dict(state["errors"]),
            "seconds": round(time.monotonic() - started, 3),
        }
    with open(args.ids_out, "a", encoding="utf-8") as f:
        for job_id in accepted:
            f.write(f"{job_id}\t{args.round}\n")
    append_result(args.results, record)
    print(
        f"  burst: sent {record['sent']}, 202s {record['accepted']} "
        f"(SIGKILL after 202 #{record['kill_at_count']} at {record['kill_time_s']} s, "
        f"{record['accepted_after_kill']} more 202s arrived after it), "
        f"other answers {record['other'] or 0}, no answer {record['failed']}"
        + (" — KILLED LATE: the burst ended before the kill point" if kill_late else "")
    )


# --- check --------------------------------------------------------------------------------------------

def read_ids(path):
    ids = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if parts and parts[0]:
                    ids.setdefault(parts[0], int(parts[1]) if len(parts) > 1 else 0)
    except FileNotFoundError:
        pass
    return ids


def read_done(path):
    """How many times each job id is in done.txt: the first word of a line (the cluster mode
    writes the instance's name after it)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return collections.Counter(line.split()[0] for line in f if line.strip())
    except FileNotFoundError:
        return collections.Counter()


def done_lines_of(path, job_ids):
    """The lines of done.txt that name one of `job_ids`, by id (to show where a duplicate ran)."""
    lines = collections.defaultdict(list)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                words = line.split()
                if words and words[0] in job_ids:
                    lines[words[0]].append(" ".join(words[1:]) or "-")
    except FileNotFoundError:
        pass
    return lines


def previous_checks(results_path):
    checks = []
    try:
        with open(results_path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                if record.get("kind") == "check":
                    checks.append(record)
    except FileNotFoundError:
        pass
    return checks


def cmd_check(args):
    host, port, _ = split_url(args.base_url)
    ids = read_ids(args.ids)
    started = time.monotonic()
    deadline = started + args.deadline
    status_of = {}          # id -> last status seen (a 200's status)
    lost = set()            # ids answered 404
    pending = list(ids)     # ids still to ask about: not yet found final nor lost
    lock = threading.Lock()
    passes = 0

    def ask_all(batch):
        results = {}
        queue = list(batch)

        def worker():
            conn = None
            while True:
                with lock:
                    if not queue or time.monotonic() > deadline:
                        break
                    job_id = queue.pop()
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(host, port, timeout=10)
                    conn.request("GET", f"/jobs/{job_id}")
                    response = conn.getresponse()
                    data = response.read()
                    if response.status == 200:
                        results[job_id] = ("found", json.loads(data).get("status"))
                    elif response.status == 404:
                        results[job_id] = ("missing", None)
                    else:
                        results[job_id] = ("error", response.status)
                except (OSError, http.client.HTTPException, ValueError) as error:
                    results[job_id] = ("error", type(error).__name__)
                    if conn is not None:
                        conn.close()
                    conn = None
            if conn is not None:
                conn.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.deadline + 15)
        return results

    errors = collections.Counter()
    while pending and time.monotonic() < deadline:
        passes += 1
        results = ask_all(pending)
        still = []
        for job_id in pending:
            outcome, value = results.get(job_id, ("error", "not asked"))
            if outcome == "found":
                status_of[job_id] = value
                lost.discard(job_id)
                if value in FINAL_EXCLUDED:
                    still.append(job_id)
            elif outcome == "missing":
                # A 404 is an answer: the store, open and ready, has no such job. It is asked
                # again next pass (it costs little), but a job that is not there after a
                # restart was lost.
                lost.add(job_id)
                still.append(job_id)
            else:
                errors[str(value)] += 1
                still.append(job_id)
        pending = still
        if pending and all(job_id in lost for job_id in pending) and passes >= 3:
            break  # only 404s left, asked three times: they are lost
        if pending:
            time.sleep(0.25)

    found = [job_id for job_id in ids if job_id in status_of]
    not_final = [j for j in found if status_of[j] in FINAL_EXCLUDED]
    unanswered = [j for j in ids if j not in status_of and j not in lost]
    statuses = collections.Counter(status_of[j] for j in found)

    done = read_done(args.done)
    duplicated = sorted(j for j, count in done.items() if count > 1)
    succeeded_not_done = sorted(j for j in found if status_of[j] == "succeeded" and done[j] == 0)
    # --strict: the command cannot fail, so a final status other than these says something broke.
    unexpected = sorted(j for j in found if status_of[j] not in FINAL_EXCLUDED + EXPECTED_FINAL)

    before = previous_checks(args.results)
    lost_before = set(before[-1]["lost_ids"]) if before else set()
    dup_before = set(before[-1]["duplicate_ids"]) if before else set()
    new_lost = sorted(lost - lost_before)
    new_dups = sorted(set(duplicated) - dup_before)

    record = {
        "kind": "check",
        "round": args.round,
        "recorded": len(ids),
        "found": len(found),
        "lost_ids": sorted(lost),
        "lost_rounds": {j: ids[j] for j in sorted(lost)},
        "new_lost_ids": new_lost,
        "unanswered_ids": unanswered,
        "not_final_ids": not_final,
        "not_final_statuses": dict(collections.Counter(status_of[j] for j in not_final)),
        "statuses": dict(statuses),
        "done_lines": sum(done.values()),
        "duplicate_ids": duplicated,
        "duplicate_counts": {j: done[j] for j in duplicated},
        "duplicate_statuses": {j: status_of.get(j) for j in duplicated},
        "new_duplicate_ids": new_dups,
        "succeeded_not_in_done": succeeded_not_done,
        "strict": args.strict,
        "unexpected_status_ids": unexpected,
        "errors": dict(errors),
        "passes": passes,
        "seconds": round(time.monotonic() - started, 3),
    }
    append_result(args.results, record)
    print(
        f"  check: {len(ids)} recorded ids, {len(found)} found, {len(lost)} lost "
        f"({len(new_lost)} new), {len(not_final)} not final, {len(unanswered)} unanswered, "
        f"statuses {dict(statuses)}, done.txt {record['done_lines']} lines, "
        f"{len(duplicated)} ids twice ({len(new_dups)} new), {record['seconds']} s"
    )
    for job_id in new_lost:
        print(f"  LOST: job {job_id} (202 in round {ids[job_id]}) answers 404 after the restart")
    ran_on = done_lines_of(args.done, set(new_dups))
    for job_id in new_dups:
        where = ran_on[job_id]
        print(
            f"  DUPLICATE: job {job_id} is in done.txt {done[job_id]} times "
            + (f"(ran on {', '.join(where)}) " if any(w != "-" for w in where) else "")
            + f"(status now {status_of.get(job_id)}, "
            + (f"202 in round {ids[job_id]})" if job_id in ids else "its 202 never arrived)")
        )
    for job_id in not_final[:10]:
        print(f"  NOT FINAL: job {job_id} is still {status_of[job_id]}")
    for job_id in unexpected[:10] if args.strict else []:
        print(f"  UNEXPECTED: job {job_id} ended {status_of[job_id]}")
    if succeeded_not_done:
        print(
            f"  {'NO MARKER' if args.strict else 'NOTE'}: {len(succeeded_not_done)} succeeded jobs are not in done.txt, e.g. "
            f"{succeeded_not_done[:3]}"
        )


# --- report -------------------------------------------------------------------------------------------

def cmd_report(args):
    bursts, checks, failures = {}, {}, {}
    try:
        with open(args.results, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                kind = record.get("kind")
                if kind == "burst":
                    bursts[record["round"]] = record
                elif kind == "check":
                    checks[record["round"]] = record
                elif kind == "failure":
                    failures.setdefault(record["round"], []).append(record["reason"])
    except FileNotFoundError:
        pass

    # The cluster mode's bursts say which instance was killed: one more column.
    cluster = any("victim" in burst for burst in bursts.values())
    print()
    print("round  202s  kill@" + ("  killed" if cluster else "")
          + "  jobs found  lost  not final  dups  result")
    passed = failed = 0
    total_202 = 0
    for rnd in range(1, args.rounds + 1):
        burst, check = bursts.get(rnd), checks.get(rnd)
        reasons = list(failures.get(rnd, []))
        if burst is None:
            reasons.append("no burst")
        if check is None:
            reasons.append("no check")
        if burst is not None:
            total_202 += burst["accepted"]
            if burst["kill_late"]:
                reasons.append("burst ended before the kill point")
        lost = len(check["new_lost_ids"]) if check else None
        unanswered = len(check["unanswered_ids"]) if check else None
        not_final = len(check["not_final_ids"]) if check else None
        dups = len(check["new_duplicate_ids"]) if check else None
        if check is not None:
            if lost:
                reasons.append(f"{lost} lost")
            if unanswered:
                reasons.append(f"{unanswered} ids got no answer")
            if not_final:
                reasons.append(f"{not_final} not final")
            if dups:
                reasons.append(f"{dups} run twice")
            if check.get("strict") and check["unexpected_status_ids"]:
                reasons.append(f"{len(check['unexpected_status_ids'])} neither succeeded nor interrupted")
            if check.get("strict") and check["succeeded_not_in_done"]:
                reasons.append(f"{len(check['succeeded_not_in_done'])} succeeded without running")
        ok = not reasons
        passed += ok
        failed += not ok

        def cell(value, width):
            return ("-" if value is None else str(value)).rjust(width)

        print(
            f"{rnd:5d}  {cell(burst and burst['accepted'], 4)}  "
            f"{cell(burst and burst['kill_at_count'], 5)}  "
            + (f"{cell(burst and burst.get('victim_name'), 6)}  " if cluster else "")
            + f"{cell(check and check['found'], 10)}  {cell(lost, 4)}  {cell(not_final, 9)}  "
            f"{cell(dups, 4)}  {'PASS' if ok else 'FAIL: ' + '; '.join(reasons)}"
        )

    last = checks[max(checks)] if checks else None
    all_lost = set()
    all_dups = set()
    for check in checks.values():
        all_lost.update(check["lost_ids"])
        all_dups.update(check["duplicate_ids"])
    print(
        f"total  {total_202:4d}         " + ("        " if cluster else "") +
        f"{(last['found'] if last else 0):10d}  {len(all_lost):4d}  "
        f"{(len(last['not_final_ids']) if last else 0):9d}  {len(all_dups):4d}"
    )
    if last:
        print(
            f"final check: {last['recorded']} recorded ids, statuses {last['statuses']}, "
            f"done.txt {last['done_lines']} lines, {len(all_dups)} ids run twice"
        )
    print("(kill@ = 202s counted when SIGKILL was sent; lost and dups = new in that round's "
          "check, total = distinct over all checks; not final = at that check)")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("freeport")

    p = sub.add_parser("plan")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--burst", type=int, required=True)

    p = sub.add_parser("wait")
    p.add_argument("url")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--timeout", type=float, default=30)

    p = sub.add_parser("burst")
    p.add_argument("url")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--conc", type=int, default=24)
    p.add_argument("--kill-after", type=int, required=True)
    p.add_argument("--ids-out", required=True)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--timeout", type=float, default=120, help="the whole burst, seconds")
    p.add_argument("--request-timeout", type=float, default=15)

    p = sub.add_parser("check")
    p.add_argument("base_url")
    p.add_argument("--ids", required=True)
    p.add_argument("--done", required=True)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--deadline", type=float, default=60)
    p.add_argument("--strict", action="store_true",
                   help="fail a job whose final status is not succeeded or interrupted, and a "
                        "succeeded job that is not in done.txt")

    p = sub.add_parser("report")
    p.add_argument("--results", required=True)
    p.add_argument("--rounds", type=int, required=True)

    args = parser.parse_args()
    {
        "freeport": cmd_freeport,
        "plan": cmd_plan,
        "wait": cmd_wait,
        "burst": cmd_burst,
        "check": cmd_check,
        "report": cmd_report,
    }[args.command](args)


if __name__ == "__main__":
    main()
