"""``python3 -m reactor.sim``: run the simulator (``--seed S`` for one seed; ``--minutes M`` or Ctrl-C to stop)."""
from __future__ import annotations

import argparse
import os
import sys

from .machine import SIZES
from .runner import RUNS, STEPS, run_seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m reactor.sim", description=(
        "Run the chat's real server and client rules on virtual time and a virtual network, with faults, "
        "checking invariants after every step; a failing run is shrunk and written down (docs/debugging.md)."))
    parser.add_argument("--seed", type=int, help="run this seed only (default: seeds from --first on)")
    parser.add_argument("--first", type=int, default=None,
                        help="the first seed (default: one from the clock, printed)")
    parser.add_argument("--seeds", type=int, help="stop after this many seeds")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop after this many minutes (default: $SIM_MINUTES, else until Ctrl-C)")
    parser.add_argument("--mode", choices=("single", "cluster", "both"), default="both",
                        help="the single process, a cluster of three nodes, or both (even seeds single, odd "
                             "ones cluster; the default)")
    parser.add_argument("--runs", type=int, default=RUNS, help=f"runs per seed (default {RUNS})")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"steps per run at most (default {STEPS})")
    parser.add_argument("--out", default="sim-failures",
                        help="where a failing run is written (default: sim-failures/)")
    parser.add_argument("--names", choices=("plain", "long"), default="plain",
                        help="the accounts' names: short, or 64 Cyrillic characters (frames listing users grow)")
    parser.add_argument("--sizes", choices=("all", "short"), default="all",
                        help="the texts typed: of every size up to the longest, or short ones only")
    parser.add_argument("--keep-going", action="store_true", help="go on after a failing seed")
    args = parser.parse_args(argv)
    minutes = args.minutes
    if minutes is None and os.environ.get("SIM_MINUTES"):
        minutes = float(os.environ["SIM_MINUTES"])
    if args.seed is not None:
        first, count = args.seed, 1
    else:
        first = args.first if args.first is not None else int.from_bytes(os.urandom(3), "big")
        count = args.seeds
        print(f"sim: seeds from {first} on, mode {args.mode}, {args.runs} runs of up to {args.steps} steps each"
              f"{f', for {minutes:g} minutes' if minutes else ', until Ctrl-C' if count is None else ''}",
              flush=True)
    totals = run_seeds(first, count=count, minutes=minutes, mode=args.mode, runs=args.runs, steps=args.steps,
                       journal_dir=args.out, names=args.names, sizes=SIZES if args.sizes == "all" else ("short",),
                       stop_at_failure=not args.keep_going)
    return 1 if totals.failures else 0


if __name__ == "__main__":
    sys.exit(main())
