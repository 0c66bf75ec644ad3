"""What one relayed message costs the server, whatever else the machine runs: ``python -m tests.bench.cost``.

Figures in CPU seconds and messages a second depend on how much of its core the server gets, and on a shared
machine that moves from run to run. This counts what does not move: the instructions the server executes per
relayed message (valgrind's callgrind, user space only: the kernel's side of a system call is not in it) and the
system calls it makes per relayed message (strace -c), for the reactor on the pure-Python modules, on the fast
build, and for miniircd, each relaying for the same 50 pairs with 4 messages in flight each way. It then prints
where the fast build's instructions go (callgrind_annotate, functions by their own cost).
Needs valgrind and strace on PATH (Debian's packages); the bench's miniircd (make bench installs it).
"""
from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from .common import write_accounts
from .loadgen import LoadGenerators
from .run import FAST, ROOT, child_env, fast_build_current, free_port, pinned, wait_accepting

CLIENTS = 100   # 50 pairs: callgrind runs the server some 50 times slower, so fewer than the bench's 1,000
WINDOW = 4


def start(kind: str, workdir: str, credentials: str, wrapper: list[str]) -> tuple[subprocess.Popen, int]:
    """The server of ``kind`` under ``wrapper`` (valgrind, or nothing), pinned to the first core; it and its port."""
    cores = sorted(os.sched_getaffinity(0))
    log = open(os.path.join(workdir, f"{kind}.log"), "ab")
    if kind == "miniircd":
        port = free_port()
        command = [*wrapper, sys.executable, "-m", "miniircd", "--listen", "127.0.0.1", "--ports", str(port)]
        if os.getuid() == 0:
            command += ["--setuid", "root"]
        proc = subprocess.Popen(command, cwd=ROOT, env=child_env("pure"), stdout=log, stderr=log,
                                preexec_fn=pinned({cores[0]}))
        if not wait_accepting(proc, port, 120.0):
            raise RuntimeError("miniircd did not start")
        return proc, port
    command = [*wrapper, sys.executable, "-m", "tests.bench.hosts", kind, "--credentials", credentials]
    proc = subprocess.Popen(command, cwd=ROOT, env=child_env("fast" if kind == FAST else "pure"),
                            stdout=subprocess.PIPE, stderr=log, preexec_fn=pinned({cores[0]}))
    ready, _, _ = select.select([proc.stdout], [], [], 120.0)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith("listening "):
        proc.kill()
        raise RuntimeError(f"{kind} did not start: {line!r}")
    return proc, int(line.split()[1])


def relay(kind: str, workdir: str, credentials: str, wrapper: list[str], during) -> tuple[int, object]:
    """Log 100 clients in, then relay for 2 s with ``during(pid)`` bracketing it; (messages relayed, its result)."""
    proc, port = start(kind, workdir, credentials, wrapper)
    cores = sorted(os.sched_getaffinity(0))
    gens = None
    try:
        gens = LoadGenerators(1, port, CLIENTS, protocol="irc" if kind == "miniircd" else "chat",
                              cpus=set(cores[1:]) or None, cwd=ROOT, env=child_env())
        replies = gens.command("login", wait=300.0, concurrency=4 if kind == "miniircd" else 50, within=240.0)
        if sum(r["ok"] for r in replies) < CLIENTS:
            raise RuntimeError(f"{kind}: not every client logged in: {replies[0]['errors'][:2]}")
        begin, end = during
        state = begin(proc.pid)
        replies = gens.command("throughput", wait=300.0, window=WINDOW, warmup=0.2, periods=4, period=0.5)
        result = end(proc.pid, state)
        return sum(r["received"] for r in replies), result
    finally:
        if gens is not None:
            gens.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def instructions(kind: str, workdir: str, credentials: str) -> tuple[float, str]:
    """Instructions per relayed message under callgrind; and the dump file of the relaying."""
    out = os.path.join(workdir, f"callgrind-{kind}.out")

    def begin(pid: int) -> None:
        subprocess.run(["callgrind_control", "--zero", str(pid)], capture_output=True, check=True)

    def end(pid: int, _state: None) -> str:
        subprocess.run(["callgrind_control", "--dump=relay", str(pid)], capture_output=True, check=True)
        dumps = sorted((f for f in os.listdir(workdir) if f.startswith(f"callgrind-{kind}.out.")),
                       key=lambda f: os.path.getmtime(os.path.join(workdir, f)))
        return os.path.join(workdir, dumps[-1])

    messages, dump = relay(kind, workdir, credentials, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"],
                           (begin, end))
    with open(dump) as file:
        total = next(int(line.split()[1]) for line in file if line.startswith(("summary:", "totals:")))
    return total / max(messages, 1), dump


def syscalls(kind: str, workdir: str, credentials: str) -> tuple[float, str]:
    """System calls per relayed message (strace -c attached while it relays), and the busiest few."""
    out = os.path.join(workdir, f"strace-{kind}.txt")

    def begin(pid: int) -> subprocess.Popen:
        tracer = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(pid)], stderr=subprocess.DEVNULL)
        time.sleep(0.5)   # (attached before the relaying starts)
        return tracer

    def end(_pid: int, tracer: subprocess.Popen) -> None:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30.0)

    messages, _ = relay(kind, workdir, credentials, [], (begin, end))
    with open(out) as file:
        lines = file.read().splitlines()
    total = next(int(line.split()[3]) for line in lines if line.rstrip().endswith("total"))
    rows = [line.split() for line in lines if re.match(r"\s*\d", line) and not line.rstrip().endswith("total")]
    busiest = ", ".join(f"{row[-1]} {int(row[3]) / max(messages, 1):.2f}" for row in rows[:4])
    return total / max(messages, 1), busiest


def user_and_system(pid: int) -> tuple[float, float]:
    """The CPU seconds process ``pid`` has spent in user space and in the kernel so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def kernel_share(kind: str, workdir: str, credentials: str) -> tuple[float, float]:
    """Untraced: the server's CPU microseconds a relayed message, and the share of them spent in the kernel (its
    system calls: a loopback send wakes the peer's socket there)."""
    def begin(pid: int) -> tuple[float, float]:
        return user_and_system(pid)

    def end(pid: int, before: tuple[float, float]) -> tuple[float, float]:
        after = user_and_system(pid)
        return after[0] - before[0], after[1] - before[1]

    messages, (user, system) = relay(kind, workdir, credentials, [], (begin, end))
    return (user + system) / max(messages, 1) * 1e6, system / max(user + system, 1e-9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.cost")
    parser.add_argument("--hosts", default=f"reactor,{FAST},miniircd")
    parser.add_argument("--top", type=int, default=25, help="functions of the fast build's profile shown")
    parser.add_argument("--keep", metavar="DIR", help="copy the callgrind dumps here (callgrind_annotate reads them)")
    args = parser.parse_args(argv)
    hosts = [h for h in args.hosts.split(",") if h != FAST or fast_build_current()]
    print(f"what a relayed message costs the server ({CLIENTS // 2} pairs, {WINDOW} in flight each way); load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="chat-cost-") as workdir:
        credentials = os.path.join(workdir, "credentials.txt")
        write_accounts(credentials, CLIENTS)
        figures, dumps = {}, {}
        for kind in hosts:
            per_message, dumps[kind] = instructions(kind, workdir, credentials)
            if args.keep:
                os.makedirs(args.keep, exist_ok=True)
                shutil.copy(dumps[kind], os.path.join(args.keep, f"callgrind-{kind}.out"))
            calls, busiest = syscalls(kind, workdir, credentials)
            cpu, kernel = kernel_share(kind, workdir, credentials)
            figures[kind] = per_message
            print(f"{kind:<13} {per_message:>9,.0f} instructions/message   {calls:5.2f} system calls/message "
                  f"({busiest}); untraced {cpu:.1f} us of CPU a message, {kernel:.0%} of it in the kernel", flush=True)
        if "miniircd" in figures:
            for kind in (k for k in figures if k != "miniircd"):
                print(f"{kind} costs {figures[kind] / figures['miniircd']:.2f}x miniircd's instructions a message")
        if FAST in dumps:
            print(f"\nthe fast build's instructions by function (own cost), {args.top} most:")
            annotated = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", dumps[FAST]],
                                       capture_output=True, text=True).stdout.splitlines()
            start = next((i for i, line in enumerate(annotated) if "file:function" in line), 0)
            # (the lines of 50% and more are the callers of everything: main, the loop's run, the calls' glue)
            rows = [line for line in annotated[start + 2:] if re.match(r"\s*[\d,]+ \(\s*(\d|[1-4]\d)\.", line)]
            for line in rows[:args.top]:
                ir, _, where = line.strip().partition(" ")
                function = where.split(":", 1)[-1].split(" [")[0] if ":" in where else where
                library = where.rsplit("/", 1)[-1].rstrip("]") if where.endswith("]") else ""
                print(f"{ir:>14} {function[:70]:<70} {library[:50]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
