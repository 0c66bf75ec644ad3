"""What the simulator writes of a failing run: its steps and every event the servers' rules took, and each node's
journal in the recording's format, which ``replay`` opens (docs/debugging.md).

Every run keeps a ``Trace``: the steps (what the user or the world did, at
which virtual time) and, between them, each event a node's rules took, with
its arguments and effects, numbered per node as a journal numbers them. Hypothesis
ends a failing search by running the shrunk run once more; that run's trace
is the one written:

- ``seed-S.sim.jsonl``, the simulator's own record (JSON lines): a header
  (``{"sim": "reactor-chat", "version": 1, "seed": S, "nodes": N,
  "broken": why, "failing": {"node": n, "event": e}, ...}``), then one line
  per step (``{"step": k, "t": seconds, "what": words}``) and per event
  (``{"node": n, "event": e, "t": seconds, "op": the rules' method,
  "args": [...], "effects": [...]}``, effects as ``[type, fields...]``);
- ``seed-S-node-N.journal``, each node's journal in the recording's format
  (``reactor/journal/``, items 1 and 2 of issue 22), written by its own
  ``ServerRecorder`` around the node's rules during that last run, texts
  included; ``reactor-chat-replay seed-S-node-N.journal --pdb E`` stops right
  before the failing event ``E``. Without ``reactor.journal`` (a tree where
  it has not landed) only the first file is written.
"""
from __future__ import annotations

import dataclasses
import enum
import importlib
import io
import itertools
import json
import os
import time
from typing import Any

from hypothesis.control import current_build_context

__all__ = ["Recorder", "Trace", "render", "journals_available"]


def _journal_modules() -> dict[str, Any] | None:
    """The recording's modules (issue 22, items 1 and 2), if this tree has them."""
    try:
        return {name: importlib.import_module(f"reactor.journal.{name}")
                for name in ("server", "writer", "scrub", "format")}
    except ImportError:
        return None


_JOURNAL = _journal_modules()


def journals_available() -> bool:
    return _JOURNAL is not None


def render(value: Any) -> Any:
    """``value`` as JSON can hold it: a dataclass (an effect) as ``[type, fields...]``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [type(value).__name__, *(render(getattr(value, f.name)) for f in dataclasses.fields(value)
                                        if f.repr)]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(key): render(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [render(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


class Trace:
    """One run's record (see the module's docstring)."""

    def __init__(self, seed: int, nodes: int, journal: bool) -> None:
        self.seed = seed
        self.nodes = nodes
        self.lines: list[tuple[Any, ...]] = []          # ("step", k, t, what) | ("event", node, e, t, op, args, fx)
        self.counts: dict[int, int] = {}                # node -> events so far
        self.broken: Exception | None = None
        self.steps = 0
        self._journal = journal and _JOURNAL is not None
        self.writers: dict[int, tuple[Any, io.BytesIO]] = {}   # node -> its JournalWriter, and what it writes to
        self._tokens = itertools.count(1)

    # -- building the rules ---------------------------------------------------------

    def build(self, node: int, cls: type, now: float, **kwargs: Any) -> Any:
        """The rules of ``node`` (``cls(**kwargs)``), recorded into a journal if this run writes them."""
        if not self._journal:
            return cls(token_factory=lambda: f"token-{next(self._tokens)}", **kwargs)
        assert _JOURNAL is not None
        scrubber = _JOURNAL["scrub"].Scrubber(texts=True)
        header = _JOURNAL["server"].server_header(cls, _JOURNAL["format"].micros(now), kwargs, scrubber,
                                                  run=f"sim-{self.seed}-node-{node}")
        buffer = io.BytesIO()
        writer = _JOURNAL["writer"].JournalWriter(buffer, header)
        self.writers[node] = (writer, buffer)
        return _JOURNAL["server"].ServerRecorder(writer, scrubber).build(cls, **kwargs)

    # -- what happens ----------------------------------------------------------------------

    def step(self, number: int, what: str, now: float) -> None:
        self.steps = number
        self.lines.append(("step", number, now, what))

    def __call__(self, node: int, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], effects: list[Any],
                 now: float) -> None:
        number = self.counts[node] = self.counts.get(node, 0) + 1
        self.lines.append(("event", node, number, now, name, (args, kwargs), effects))

    def done(self, broken: Exception | None) -> None:
        self.broken = broken

    # -- writing it down ------------------------------------------------------------------

    def failing(self) -> tuple[int, int] | None:
        """(node, event): the last event before the invariant broke."""
        for line in reversed(self.lines):
            if line[0] == "event":
                return line[1], line[2]
        return None

    def write(self, directory: str, seed: int) -> list[str]:
        """Write the run down in ``directory`` (made if need be); the paths written."""
        os.makedirs(directory, exist_ok=True)
        failing = self.failing()
        header = {"sim": "reactor-chat", "version": 1, "seed": seed, "world_seed": self.seed, "nodes": self.nodes,
                  "steps": self.steps, "broken": str(self.broken) if self.broken else None,
                  "failing": {"node": failing[0], "event": failing[1]} if failing else None}
        path = os.path.join(directory, f"seed-{seed}.sim.jsonl")
        with open(path, "w", encoding="utf-8") as out:
            out.write(json.dumps(header) + "\n")
            for line in self.lines:
                if line[0] == "step":
                    _, number, now, what = line
                    out.write(json.dumps({"step": number, "t": now, "what": what}) + "\n")
                else:
                    _, node, number, now, name, (args, kwargs), effects = line
                    out.write(json.dumps({"node": node, "event": number, "t": now, "op": name,
                                          "args": render([*args, kwargs] if kwargs else args),
                                          "effects": render(effects)}) + "\n")
        written = [path]
        for node, (writer, buffer) in sorted(self.writers.items()):
            writer.flush()
            journal = os.path.join(directory, f"seed-{seed}-node-{node}.journal")
            with open(journal, "wb") as out:
                out.write(buffer.getvalue())
            written.append(journal)
        return written


class Recorder:
    """Makes each run's ``Trace`` and keeps the last that broke (Hypothesis's final, shrunk run)."""

    def __init__(self, nodes: int, journal: bool = True) -> None:
        self.nodes = nodes
        self.journal = journal
        self._failed: Trace | None = None
        self._steps = 0
        self.runs = 0
        self.found: tuple[int, float] | None = None   # (runs, seconds) when a run first broke
        self._start = time.perf_counter()
        self._last: Trace | None = None

    def run(self, seed: int, nodes: int) -> Trace:
        self._settle_last()
        final = current_build_context().is_final
        self.runs += 1
        self._last = Trace(seed, nodes, journal=self.journal and final)
        return self._last

    def _settle_last(self) -> None:
        last = self._last
        if last is not None:
            self._steps += last.steps
            if last.broken is not None:
                self._failed = last
                if self.found is None:
                    self.found = (self.runs, time.perf_counter() - self._start)
            self._last = None

    @property
    def failed(self) -> Trace | None:
        """The last run that broke an invariant."""
        self._settle_last()
        return self._failed

    @property
    def steps(self) -> int:
        """The steps of every run so far."""
        self._settle_last()
        return self._steps
