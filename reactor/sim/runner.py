"""Running the simulator: one seed, or seed after seed until stopped, with a progress line and a summary.

A *seed* is one Hypothesis search: ``runs`` runs of up to ``steps`` steps
each, drawn from that seed (``hypothesis.seed``), so the same seed on the same
code makes the same runs. Even seeds simulate the single process, odd ones a
cluster of three nodes (``--mode`` picks one for all). When a run breaks an
invariant, Hypothesis shrinks it to a short run that still breaks it; the
runner prints its steps and what broke, and writes it down
(``reactor/sim/journal.py``).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.errors import Flaky
from hypothesis.stateful import run_state_machine_as_test

from .checks import Broken
from .journal import Recorder
from .machine import SIZES, SimMachine

__all__ = ["Outcome", "Totals", "run_seed", "run_seeds", "mode_of", "RUNS", "STEPS", "CLUSTER_NODES"]

RUNS = 20           # runs per seed
STEPS = 60          # steps per run, at most
CLUSTER_NODES = 3


def mode_of(number: int, mode: str) -> int:
    """The nodes a seed simulates: 0 for the single process, else a cluster's."""
    if mode == "both":
        return CLUSTER_NODES if number % 2 else 0
    return CLUSTER_NODES if mode == "cluster" else 0


@dataclass
class Outcome:
    """What one seed came to: its runs and steps; what broke (None: nothing), the shrunk run's steps, where it
    was written."""
    seed: int
    nodes: int
    runs: int = 0
    steps: int = 0
    seconds: float = 0.0
    found: tuple[int, float] | None = None   # (runs, seconds) when a run first broke, before shrinking
    broken: str | None = None
    shrunk: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)


def run_seed(number: int, *, nodes: int = 0, runs: int = RUNS, steps: int = STEPS, shrink: bool = True,
             journal_dir: str | None = None, names: str = "plain", sizes: tuple[str, ...] = SIZES) -> Outcome:
    """Search seed ``number``: its runs until one breaks an invariant, shrunk (``shrink``) and written down."""
    outcome = Outcome(number, nodes)
    recorder = Recorder(nodes)
    machine = type(f"Sim{number}", (SimMachine,), {"cluster": nodes, "recorder": staticmethod(recorder.run),
                                                   "names": names, "sizes": sizes})
    seed(number)(machine)
    phases = [Phase.generate, Phase.shrink] if shrink else [Phase.generate]
    start = time.perf_counter()
    try:
        run_state_machine_as_test(machine, settings=settings(
            max_examples=runs, stateful_step_count=steps, deadline=None, database=None, phases=phases,
            suppress_health_check=list(HealthCheck), report_multiple_bugs=False))
    except (Broken, Flaky) as exc:
        outcome.broken = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        outcome.shrunk = [note for note in getattr(exc, "__notes__", [])
                          if note.startswith("state.") and note not in ("state.holds()", "state.teardown()")]
        failed = recorder.failed
        if journal_dir is not None and failed is not None:
            outcome.written = failed.write(journal_dir, number)
    outcome.seconds = time.perf_counter() - start
    outcome.steps = recorder.steps
    outcome.runs = recorder.runs
    outcome.found = recorder.found
    return outcome


@dataclass
class Totals:
    seeds: int = 0
    runs: int = 0
    steps: int = 0
    seconds: float = 0.0
    failures: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.seeds += 1
        self.runs += outcome.runs
        self.steps += outcome.steps
        if outcome.broken is not None:
            self.failures.append(outcome)

    def line(self, elapsed: float) -> str:
        rate = self.seeds / elapsed if elapsed else 0.0
        return (f"sim: {self.seeds} seeds, {self.runs} runs, {self.steps} steps in {elapsed:.0f} s "
                f"({rate:.2f} seeds/s, {self.runs / elapsed if elapsed else 0:.0f} runs/s, "
                f"{self.steps / elapsed if elapsed else 0:.0f} steps/s); {len(self.failures)} broken")


def report(outcome: Outcome, out: TextIO) -> None:
    mode = f"a cluster of {outcome.nodes}" if outcome.nodes else "the single process"
    runs, seconds = outcome.found or (outcome.runs, outcome.seconds)
    print(f"\nseed {outcome.seed} ({mode}) broke an invariant in run {runs}, after {seconds:.2f} s; shrunk in "
          f"{outcome.runs - runs} more runs, {outcome.seconds - seconds:.1f} s:", file=out)
    print(f"  {outcome.broken}", file=out)
    print(f"  shrunk to {len(outcome.shrunk)} steps:", file=out)
    for line in outcome.shrunk:
        print(f"    {line}", file=out)
    for path in outcome.written:
        print(f"  written: {path}", file=out)
    print(f"  again: python3 -m reactor.sim --seed {outcome.seed} --mode {'cluster' if outcome.nodes else 'single'}",
          file=out)


def run_seeds(first: int, *, count: int | None, minutes: float | None, mode: str, runs: int, steps: int,
              journal_dir: str | None, names: str = "plain", sizes: tuple[str, ...] = SIZES,
              out: TextIO = sys.stdout, stop_at_failure: bool = True,
              progress_every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> Totals:
    """Seeds from ``first`` on: ``count`` of them, or until ``minutes`` have passed (or Ctrl-C); a progress line
    every ``progress_every`` seconds, a summary at the end."""
    totals = Totals()
    start = last = clock()
    number = first
    try:
        while count is None or totals.seeds < count:
            if minutes is not None and clock() - start >= minutes * 60:
                break
            seed_started = clock()
            outcome = run_seed(number, nodes=mode_of(number, mode), runs=runs, steps=steps,
                               journal_dir=journal_dir, names=names, sizes=sizes)
            totals.add(outcome)
            if outcome.broken is not None:
                runs_in, found = outcome.found or (outcome.runs, outcome.seconds)
                print(f"\nsim: found after {totals.seeds} seeds ({totals.runs - outcome.runs + runs_in} runs), "
                      f"{seed_started - start + found:.1f} s from the start", file=out)
                report(outcome, out)
                if stop_at_failure:
                    break
            number += 1
            if clock() - last >= progress_every:
                last = clock()
                print(totals.line(last - start), file=out, flush=True)
    except KeyboardInterrupt:
        print("\nsim: stopped", file=out)
    totals.seconds = clock() - start
    print(totals.line(totals.seconds), file=out, flush=True)
    return totals
