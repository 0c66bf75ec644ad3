"""Instructions (callgrind) the server at ROOT spends per relayed message, with receipts: two runs, M1 and M2
messages with WINDOW in flight, the difference. Each message has a ref of its own (as this client's); with
``--shown`` yoda's hello says it sends receipts and yoda answers one ``shown`` for each WINDOW messages (as the
client answers a burst), and hans takes the ``read`` frames; with ``--handed`` yoda's hello says so and yoda never
says ``shown``. (docs/performance.md, *Receipts on the relay*; it needs valgrind.)

usage: python -m tests.bench.receipts_ir ROOT M1 M2 WINDOW [--shown | --handed]
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile

PY = sys.executable
TEXT = "the quick brown fox jumps over the lazy dog"


def frame(d):
    return json.dumps(d, separators=(",", ":")).encode() + b"\n"


class Wire:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def send(self, d):
        self.s.sendall(frame(d))

    def recv(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def until(self, t):
        while True:
            f = self.recv()
            if f.get("type") == t:
                return f


def run(root, messages, window, tmp, shown, handed=False):
    creds = os.path.join(tmp, "credentials.txt")
    with open(creds, "w") as f:
        f.write("hans falcon*solo\nyoda wise@!man\n")
    out = os.path.join(tmp, f"cg.{messages}.{window}.out")
    env = dict(os.environ, PYTHONPATH=root, PYTHONHASHSEED="0")
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", PY,
                             os.path.join(root, "server_main.py"), "0", "1", "600", "--credentials", creds,
                             "--state", ":memory:", "--log-level", "ERROR", "--rate", "0", "--sender-quota", "0"],
                            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = proc.stdout.readline().decode()
    port = int(line.rsplit(":", 1)[1])
    clients = {}
    for user, pw in (("hans", "falcon*solo"), ("yoda", "wise@!man")):
        w = Wire(port)
        hello = {"type": "hello", "version": 3}
        if (shown or handed) and user == "yoda":
            hello["receipts"] = True
        w.send(hello)
        w.until("hello")
        w.send({"type": "username", "username": user})
        w.until("username_ok")
        w.send({"type": "password", "password": pw})
        w.until("welcome")
        clients[user] = w
    hans, yoda = clients["hans"], clients["yoda"]
    for w in (hans, yoda):
        w.send({"type": "ping"})
        w.until("pong")
    sent = 0
    while sent < messages:
        hans.s.sendall(b"".join(frame({"type": "message", "to": "yoda", "text": TEXT, "ref": f"k3Jd9aQ2x0Lm.{n}"})
                                for n in range(sent, sent + window)))
        refs = [yoda.until("message").get("ref") for _ in range(window)]
        if shown:
            yoda.send({"type": "shown", "refs": refs})
            got = 0
            while got < window:
                got += len(hans.until("read")["refs"])
        sent += window
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)
    with open(out) as f:
        text = f.read()
    m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    return int(m.group(1))


def main():
    root, m1, m2, window = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    shown = "--shown" in sys.argv[5:]
    handed = "--handed" in sys.argv[5:]   # yoda says receipts in its hello, and never says shown
    with tempfile.TemporaryDirectory() as tmp:
        a = run(root, m1, window, tmp, shown, handed)
        b = run(root, m2, window, tmp, shown, handed)
    mode = " shown" if shown else " handed" if handed else ""
    print(f"{root}: window {window}{mode}: {(b - a) / (m2 - m1):,.0f} Ir per relayed message ({a:,} / {b:,})")


if __name__ == "__main__":
    main()
