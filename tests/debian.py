"""Debian packages for tests and benches, fetched without root: ``apt-get download`` and ``dpkg-deb -x``.

``Apt(state, package)`` speaks apt-get on the system's package lists, or, where they do not know
``package`` (a fresh container has none), on a private copy of bookworm's: an ``apt-get update`` into
``state``, nothing of the system's changed. tests/redis_binary.py fetches the Redis engine with it,
tests/prometheus.py the Prometheus server.
"""
from __future__ import annotations

import pathlib
import re
import subprocess
import warnings

BOOKWORM = "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main\n"


class Apt:
    """apt-get on the system's package lists, or, where they do not know ``package``, on a private copy of
    bookworm's (an ``apt-get update`` into ``state``: no root, nothing of the system's changed)."""

    def __init__(self, state: pathlib.Path, package: str) -> None:
        self._state = state
        self._package = package
        self._options: list[str] = []
        if not self._candidate():
            self._private_lists()

    def _candidate(self) -> str | None:
        out = subprocess.run(["apt-cache", *self._options, "policy", self._package], capture_output=True,
                             text=True).stdout
        found = re.search(r"Candidate:\s*(\S+)", out)
        return found.group(1) if found and found.group(1) != "(none)" else None

    def _private_lists(self) -> None:
        lists = self._state / "lists"
        (lists / "partial").mkdir(parents=True, exist_ok=True)
        (self._state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        sources = self._state / "sources.list"
        sources.write_text(BOOKWORM)
        self._options = ["-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={self._state / 'cache'}",
                         "-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/nonexistent",
                         "-o", "Debug::NoLocking=1"]
        subprocess.run(["apt-get", *self._options, "update"], check=True, capture_output=True)

    def version(self, pinned: str, series: str) -> str:
        """``pinned`` if apt has it, else apt's candidate if it begins with ``series`` (with a warning)."""
        out = subprocess.run(["apt-cache", *self._options, "madison", self._package], capture_output=True,
                             text=True).stdout
        if any(line.split("|")[1].strip() == pinned for line in out.splitlines() if line.count("|") >= 2):
            return pinned
        candidate = self._candidate()
        if candidate is None or not candidate.startswith(series):
            raise RuntimeError(f"apt has neither {self._package} {pinned} nor another {series}* "
                               f"(candidate: {candidate})")
        warnings.warn(f"{self._package} {pinned} is gone from apt; taking its candidate {candidate}", stacklevel=2)
        return candidate

    def download(self, into: pathlib.Path, package: str) -> None:
        # (as root apt warns that its _apt user cannot write here; the download works all the same)
        subprocess.run(["apt-get", *self._options, "download", package], cwd=into, check=True, capture_output=True)


def unpack(deb: pathlib.Path, tree: pathlib.Path) -> None:
    """The files of ``deb`` under ``tree``, as dpkg would put them under /."""
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
