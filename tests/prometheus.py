"""A real Prometheus for the metrics endpoint's end-to-end tests: its binary, fetched if need be, and a process of it.

``prometheus_binary()`` takes ``prometheus`` from PATH if it runs, else the one fetched into
``.venv/prometheus/`` before, else fetches Debian bookworm's ``prometheus`` package (a Go binary that needs
libc alone; ``promtool`` comes with it) by ``apt-get download`` (no root needed) and ``dpkg-deb -x``, as
tests/redis_binary.py fetches the Redis engine (tests/debian.py).

``PrometheusProcess(targets)`` runs one on a free loopback port, scraping ``targets`` every
``SCRAPE_INTERVAL``, its data in a directory of its own; ``query`` asks its HTTP API for an instant vector.

``python -m tests.prometheus`` fetches it if need be and prints its path and version.
"""
from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from tests.debian import Apt, unpack
from tests.redis_binary import free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent
HOME = ROOT / ".venv" / "prometheus"
BINARY = HOME / "root" / "usr" / "bin" / "prometheus"
PACKAGE = "prometheus"
VERSION = "2.42.0+ds-5+deb12u1"   # Debian bookworm's
SERIES = "2."
SCRAPE_INTERVAL = "200ms"
START_TIMEOUT = 30.0   # seconds Prometheus may take to say it is ready


def version_of(binary: str | pathlib.Path) -> str | None:
    """The version ``binary --version`` reports (``prometheus, version 2.42.0+ds ...``), None if it does not run."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"prometheus, version (\S+)", out.stdout + out.stderr)
    return found.group(1) if found else None


def prometheus_binary() -> pathlib.Path:
    """The path of a runnable Prometheus server, fetched if need be."""
    found = shutil.which("prometheus")
    if found and version_of(found):
        return pathlib.Path(found)
    if not version_of(BINARY):
        fetch()
    return BINARY


def promtool() -> pathlib.Path:
    """Prometheus's checker (``promtool check config``/``rules``), beside the server."""
    return prometheus_binary().with_name("promtool")


def fetch() -> None:
    """Download the prometheus package and unpack it under HOME."""
    debs = HOME / "debs"
    shutil.rmtree(HOME, ignore_errors=True)
    debs.mkdir(parents=True)
    apt = Apt(HOME / "apt", PACKAGE)
    apt.download(debs, f"{PACKAGE}={apt.version(VERSION, SERIES)}")
    for deb in debs.glob("*.deb"):
        unpack(deb, HOME / "root")
    shutil.rmtree(debs)
    if not version_of(BINARY):
        raise RuntimeError(f"{BINARY} does not run")


class PrometheusProcess:
    """Prometheus on a free loopback port scraping ``targets`` (``host:port`` each, job ``chat``)."""

    def __init__(self, targets: list[str], binary: pathlib.Path | None = None, interval: str = SCRAPE_INTERVAL) -> None:
        self.binary = binary or prometheus_binary()
        self.interval = interval   # between scrapes, and how long one may take
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="prometheus-"))
        self.port = free_port()
        self.targets = targets
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusProcess:
        config = self.dir / "prometheus.yml"
        config.write_text(json.dumps({   # (JSON is YAML)
            "global": {"scrape_interval": self.interval, "scrape_timeout": self.interval},
            "scrape_configs": [{"job_name": "chat", "static_configs": [{"targets": self.targets}]}]}))
        self.log_path = self.dir / "prometheus.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(self.binary), f"--config.file={config}", f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"Prometheus exited with {self.process.returncode}: {self.log()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Prometheus was not ready within {START_TIMEOUT}s: {self.log()[-2000:]}")
            time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def query(self, expression: str) -> list[tuple[dict[str, str], float]]:
        """An instant query through the HTTP API: each series' labels and value."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return [(series["metric"], float(series["value"][1])) for series in body["data"]["result"]]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def main() -> int:
    binary = prometheus_binary()
    print(binary)
    print("version", version_of(binary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
