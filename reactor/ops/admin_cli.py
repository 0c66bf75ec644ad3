"""The operator's command: ``reactor-chat-admin PATH COMMAND [ARGS...]`` (also ``server_main.py admin ...``).

It checks the command before it connects, sends it over the admin socket at PATH, and prints the answer:
a table aligned in columns, or the one line of what was done. Exit status: 0 done; 1 it could not be done
(the user is not online, the server cannot be reached...); 2 an unknown command or bad arguments. What
the server sends is shown through ``visible`` (user names and addresses never reach the terminal as
control characters). A plain blocking client: it is a command, not part of the loop.
"""
from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from ..framing import encode
from ..text import visible
from .admin_commands import FAILED_STATUS, USAGE_STATUS, BadArguments, parse, request, usage

TIMEOUT = 30.0   # seconds to wait for the server at each step
MAX_LINE = 1 << 20


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(f"usage: reactor-chat-admin PATH COMMAND [ARGS...]\n\ncommands:\n{usage()}")
        return 0
    if len(argv) < 2:
        print(f"Error. Give the admin socket's PATH and a COMMAND.\nusage: reactor-chat-admin PATH COMMAND "
              f"[ARGS...]\n\ncommands:\n{usage()}", file=sys.stderr)
        return USAGE_STATUS
    path, name, words = argv[0], argv[1], argv[2:]
    try:
        parse(name, words)
    except BadArguments as exc:
        print(f"Error. {exc}", file=sys.stderr)
        return USAGE_STATUS
    try:
        answer = ask(path, request(name, words))
    except OSError as exc:
        print(f"Error. Cannot reach the server at {path}: {exc.strerror or exc}", file=sys.stderr)
        return FAILED_STATUS
    except ValueError as exc:
        print(f"Error. The server's answer makes no sense: {exc}", file=sys.stderr)
        return FAILED_STATUS
    return show(answer, sys.stdout, sys.stderr)


def ask(path: str, frame: dict[str, Any], timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    """Send one request to the socket at ``path``; the answer's frames, the last one ``ok`` or ``error``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(encode(frame))
        reader = sock.makefile("rb")
        frames = []
        while True:
            line = reader.readline(MAX_LINE)
            if not line.endswith(b"\n"):
                raise ValueError("the connection ended before the answer did")
            answer = json.loads(line)
            if not isinstance(answer, dict):
                raise ValueError("an answer line is not an object")
            frames.append(answer)
            if "ok" in answer or "error" in answer:
                return frames


def show(answer: list[dict[str, Any]], out: TextIO, err: TextIO) -> int:
    """Print an answer; its exit status."""
    columns = next((f["columns"] for f in answer if "columns" in f), None)
    rows = [f["row"] for f in answer if "row" in f]
    last = answer[-1]
    if columns is not None:
        out.write(table(columns, rows))
    if "error" in last:
        print(visible(str(last["error"])), file=err)
        status = last.get("status")
        return status if status in (FAILED_STATUS, USAGE_STATUS) else FAILED_STATUS
    print(visible(str(last["ok"])), file=out)
    return 0


def table(columns: list[str], rows: list[list[Any]]) -> str:
    """The rows aligned under their column names (upper case); ``who``'s times and flags in words."""
    shown = [[cell(columns[i] if i < len(columns) else "", value) for i, value in enumerate(row)] for row in rows]
    heads = [str(c).upper() for c in columns]
    widths = [max([len(h)] + [len(r[i]) for r in shown if i < len(r)]) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)).rstrip() for r in shown]
    return "\n".join(lines) + "\n"


def cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column == "since" and isinstance(value, int | float):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    if column == "idle" and isinstance(value, int | float):
        return duration(value)
    if column == "tls" and isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return visible(str(value))


def duration(seconds: float) -> str:
    """``42s``, ``3m07s``, ``2h05m``, ``3d04h``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


if __name__ == "__main__":
    sys.exit(main())
