"""The engine of cluster mode for tests and benches: a Valkey/Redis >= 7.0 server binary, and a process of it.

``engine_binary()`` takes ``valkey-server`` or ``redis-server`` from PATH if it is 7.0 or newer, else the
one fetched into ``.venv/engine/`` before, else fetches it: Debian bookworm's ``redis-tools`` package (its
``redis-check-rdb`` is the server too, chosen by the name it is run by), and the libraries it needs that the
system lacks, by ``apt-get download`` (no root needed) and ``dpkg-deb -x``. Where the system's package lists
do not know the package (a fresh container has none), a private ``apt-get update`` into ``.venv/engine/apt``
fetches bookworm's. The result is ``.venv/engine/bin/redis-server``, a wrapper that sets ``LD_LIBRARY_PATH``.

``python -m tests.redis_binary`` fetches it if need be and prints its path and version.
"""
from __future__ import annotations

import os
import pathlib
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from tests.debian import Apt

ROOT = pathlib.Path(__file__).resolve().parent.parent
HOME = ROOT / ".venv" / "engine"
WRAPPER = HOME / "bin" / "redis-server"
PACKAGE = "redis-tools"
VERSION = "5:7.0.15-1~deb12u7"   # Debian bookworm's redis 7.0
MINIMUM = (7, 0)
# The shared libraries the binary may need, by the Debian package that holds them.
LIBRARIES = {"libjemalloc.so.2": "libjemalloc2", "liblzf.so.1": "liblzf1", "liblua5.1.so.0": "liblua5.1-0",
             "libhiredis.so.0.14": "libhiredis0.14", "libatomic.so.1": "libatomic1", "libssl.so.3": "libssl3",
             "libcrypto.so.3": "libssl3", "libsystemd.so.0": "libsystemd0"}
START_TIMEOUT = 20.0   # seconds an engine may take to answer PING


def version_of(binary: str | os.PathLike[str]) -> tuple[int, ...] | None:
    """The version ``binary --version`` reports (``Redis server v=7.0.15 ...``), None if it does not run."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in found.groups()) if found else None


def engine_binary() -> str:
    """The path of a runnable Valkey/Redis server of version 7.0 or newer, fetched if need be."""
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found and (version_of(found) or ()) >= MINIMUM:
            return found
    if not ((version_of(WRAPPER) or ()) >= MINIMUM):
        fetch()
    return str(WRAPPER)


def fetch() -> None:
    """Download redis-tools and the libraries the system lacks, unpack them under HOME, write the wrapper."""
    debs = HOME / "debs"
    tree = HOME / "root"
    shutil.rmtree(HOME, ignore_errors=True)
    debs.mkdir(parents=True)
    apt = Apt(HOME / "apt", PACKAGE)
    apt.download(debs, f"{PACKAGE}={apt.version(VERSION, '5:7.0.')}")
    for deb in debs.glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
    server = tree / "usr" / "bin" / "redis-server"
    server.symlink_to("redis-check-rdb")   # one binary; run by this name it is the server
    lib_dirs = [str(d) for d in sorted((tree / "usr" / "lib").glob("*-linux-gnu*"))] + [str(tree / "usr" / "lib")]
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(lib_dirs))
    while missing := _missing_libraries(server, env):
        unknown = [lib for lib in missing if lib not in LIBRARIES]
        if unknown:
            raise RuntimeError(f"{server} needs libraries we do not know the package of: {unknown}")
        for package in sorted({LIBRARIES[lib] for lib in missing}):
            apt.download(debs, package)
            deb = max(debs.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
        lib_dirs = [str(d) for d in sorted((tree / "usr" / "lib").glob("*-linux-gnu*"))] + [str(tree / "usr" / "lib")]
        env["LD_LIBRARY_PATH"] = ":".join(lib_dirs)
    WRAPPER.parent.mkdir(parents=True, exist_ok=True)
    WRAPPER.write_text(f'#!/bin/sh\nLD_LIBRARY_PATH={":".join(lib_dirs)}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}} '
                       f'exec {shlex.quote(str(server))} "$@"\n')
    WRAPPER.chmod(0o755)
    if not ((version_of(WRAPPER) or ()) >= MINIMUM):
        raise RuntimeError(f"{WRAPPER} does not run as a server of version {MINIMUM} or newer")


def _missing_libraries(binary: pathlib.Path, env: dict[str, str]) -> list[str]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env, check=True).stdout
    return re.findall(r"^\s*(\S+) => not found", out, re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ping(port: int, timeout: float = 1.0) -> bool:
    """True if an engine on ``port`` answers PING with PONG (a loading engine answers an error)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EngineProcess:
    """An engine on a free loopback port, in a directory of its own, its writes in an append-only file
    flushed on every write: a ``kill9`` loses nothing acknowledged, and ``restart`` brings it all back."""

    def __init__(self, binary: str | None = None, directory: str | os.PathLike[str] | None = None) -> None:
        self.binary = binary or engine_binary()
        self._own_dir = directory is None
        self.dir = pathlib.Path(directory or tempfile.mkdtemp(prefix="engine-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> EngineProcess:
        """Start it and wait until it answers PING."""
        config = self.dir / "engine.conf"
        config.write_text(f"port {self.port}\nbind 127.0.0.1\nprotected-mode yes\ndir {self.dir}\n"
                          'appendonly yes\nappendfsync always\nsave ""\nlogfile engine.log\n')
        self.process = subprocess.Popen([self.binary, str(config)], cwd=self.dir, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not ping(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"the engine exited with {self.process.returncode}: {self.log()[-2000:]}")
            if time.monotonic() > deadline:
                self.kill9()
                raise RuntimeError(f"the engine did not answer PING within {START_TIMEOUT}s: {self.log()[-2000:]}")
            time.sleep(0.02)
        return self

    def log(self) -> str:
        path = self.dir / "engine.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill9(self) -> None:
        """SIGKILL, and wait for it to be gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=30)

    def restart(self) -> EngineProcess:
        """Start again in the same directory on the same port: the append-only file brings the data back."""
        self.kill9()
        return self.start()

    def restart_empty(self) -> EngineProcess:
        """kill -9, then start again on the same port with its data gone (an engine restarted without its
        append-only file)."""
        self.kill9()
        shutil.rmtree(self.dir / "appendonlydir", ignore_errors=True)
        for rdb in self.dir.glob("*.rdb"):
            rdb.unlink()
        return self.start()

    def command(self, *args: str) -> bytes:
        """Send one command (``FLUSHALL``); its reply's first line (``+OK``)."""
        packed = f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(arg.encode())}\r\n".encode() + arg.encode() + b"\r\n" for arg in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=START_TIMEOUT) as sock:
            sock.sendall(packed)
            reply = b""
            while b"\r\n" not in reply:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        return reply.split(b"\r\n", 1)[0]

    def stop(self) -> None:
        """SIGTERM (SIGKILL if it lingers; SIGCONT first, in case it was stopped), and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def main() -> int:
    binary = engine_binary()
    version = version_of(binary)
    print(binary)
    print("version", ".".join(map(str, version or ())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
