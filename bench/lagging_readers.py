"""Peak RSS of a hookrunner binary while readers that never read follow a 200 MiB output.

Usage: python3 bench/lagging_readers.py BINARY [READERS] [follow|plain]
  without a mode: READERS `stream` clients (default 4), one job each;
  `follow`: READERS `log?follow=1` readers of one job that is still running;
  `plain`:  READERS plain `log` readers of one job that has just finished.
Issue 10's numbers (debug build): stream 243 -> 34 MiB, follow 1350 -> 422, plain 797 -> 22.
"""
import json, os, socket, subprocess, sys, tempfile, time, urllib.request

binary = sys.argv[1]
linger = 5 if len(sys.argv) > 3 and sys.argv[3] == "follow" else 0
readers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
dir = tempfile.mkdtemp()
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
open(f"{dir}/hooks.yaml", "w").write(f"""server: {{admin_token: t, state_dir: {dir}/state, max_jobs: 8}}
hooks:
  - id: flood
    signature: none
    concurrency: {{mode: parallel}}
    run: {{shell: 'head -c 209715200 /dev/zero | tr "\\\\0" x'}}
    response: {{mode: stream}}
  - id: logged
    signature: none
    run: {{shell: 'head -c 209715200 /dev/zero | tr "\\0" x; sleep {linger}', max_output: 256MiB}}
    response: {{mode: async}}
""")
follow = len(sys.argv) > 3
server = subprocess.Popen([binary, "serve", "--config", f"{dir}/hooks.yaml", "--listen", f"127.0.0.1:{port}"],
                          stderr=open(f"{dir}/log", "w"))
def get(path):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": "Bearer t"})
    return urllib.request.urlopen(request, timeout=60).read()
for _ in range(200):
    try: get("/healthz"); break
    except Exception: time.sleep(0.05)
def status(field):
    for line in open(f"/proc/{server.pid}/status"):
        if line.startswith(field): return int(line.split()[1]) // 1024
idle = status("VmRSS:")
clients = []
if follow:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/hooks/logged", data=b"", method="POST")
    job = json.loads(urllib.request.urlopen(request).read())["job_id"]
    time.sleep(2.5)  # the output is written; the readers come while the job still runs
for _ in range(readers if not follow else 0):
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"POST /hooks/flood HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    clients.append(c)
for _ in range(readers if follow else 0):
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(f"GET /jobs/{job}/log?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    clients.append(c)
hook = "logged" if follow else "flood"
started = time.time()
while True:
    jobs = json.loads(get(f"/jobs?hook={hook}"))["jobs"]
    if len(jobs) == (1 if follow else readers) and all(j["status"] == "succeeded" for j in jobs): break
    if time.time() - started > 300: print("jobs did not finish", jobs); break
    time.sleep(0.2)
took = time.time() - started
time.sleep(2 if follow else 0)  # followers read the file after the job; give them time to pile up
print(f"{os.path.basename(binary)}: {readers} lagging {('log?follow=1 (job running)' if linger else 'log (job finished)') if follow else 'stream'} readers, idle RSS {idle} MiB, "
      f"RSS after the jobs {status('VmRSS:')} MiB, peak RSS {status('VmHWM:')} MiB, jobs done in {took:.1f} s")
for c in clients: c.close()
server.terminate(); server.wait()
