"""``reactor-chat-replay FILE`` (``python3 server_main.py replay FILE``): replay a journal, stop at the first
departure, print a timeline, stop in the debugger before an event.

    reactor-chat-replay chat.journal                      # check: every event's effects as recorded
    reactor-chat-replay chat.journal --print --user yoda  # yoda's timeline
    reactor-chat-replay chat.journal --until 1200         # replay the first 1200 events only
    reactor-chat-replay chat.journal --pdb 1200           # stop in pdb right before event 1200
    reactor-chat-replay chat.journal --pdb user=yoda,frame=block   # ... before yoda's first block
    reactor-chat-replay chat.journal --pdb                # ... at the departure (or the rules' exception)

A client's journal replays the same way (``--screen`` writes what its terminal
showed). In the debugger, ``rules`` is the rules' object, ``event`` the event
about to be taken (``event.args``), ``replay.apply(event)`` takes it; ``c``
goes on. Exit status: 0 when every digest matched, 1 at a departure or an
exception in the rules, 2 when the file is no journal this code replays.
"""
from __future__ import annotations

import argparse
import logging
import pdb
import sys
import time
import traceback
from typing import Any

from .format import Event, JournalError
from .replay import Departure, ServerReplay, open_journal
from .timeline import ServerTimeline, clock

__all__ = ["main", "Condition"]


class Condition:
    """Where ``--pdb`` stops: before event ``number``, at the first event that matches ``user``/``frame``/``op``
    (``user=yoda,frame=block``), or (``departure``) only where the replay departs or the rules raise."""

    def __init__(self, text: str) -> None:
        self.number: int | None = None
        self.fields: dict[str, str] = {}
        self.departure = text == "departure"
        if self.departure:
            return
        if text.isdigit():
            self.number = int(text)
            return
        for part in text.split(","):
            key, eq, value = part.partition("=")
            if not eq or key not in ("user", "frame", "op", "conn"):
                raise argparse.ArgumentTypeError(f"{text!r}: give an event number or user=NAME,frame=TYPE "
                                                 "(also op=OP, conn=N)")
            self.fields[key] = value
        self.fired = False

    def matches(self, replay: Any, event: Event) -> bool:
        if self.departure:
            return False
        if self.number is not None:
            return event.number == self.number
        if self.fired:
            return False
        found = _facts(replay, event)
        if all(found.get(key) == value or value in found.get(key + "s", ()) for key, value in self.fields.items()):
            self.fired = True
            return True
        return False


_FROM_A_CONN = frozenset({"c", "r", "m", "M", "P", "b", "d", "w", "p"})   # server ops whose first argument is a conn


def _facts(replay: Any, event: Event) -> dict[str, Any]:
    """What a condition may name of ``event``, as the rules know it before taking it."""
    facts: dict[str, Any] = {"op": event.op}
    args = event.args
    frame: Any = None
    if event.op == "m":
        frame = {"type": "message", "to": args[1]}
    elif event.op == "M":
        frame = {"type": "message", "to": replay.rules.user_of(args[1])}
    elif event.op == "P":
        frame = {"type": "ping"}
    elif event.op in ("r", "f", "pF"):
        frame = args[-1]
    if type(frame) is dict:
        facts["frame"] = str(frame.get("type"))
    users = set()
    if replay.side == "server" and args and type(args[0]) is int and event.op in _FROM_A_CONN:
        facts["conn"] = str(args[0])
        user = replay.rules.user_of(args[0])
        if user is not None:
            users.add(user)
    elif replay.side == "client" and replay.rules.user is not None:
        users.add(replay.rules.user)
    if type(frame) is dict:
        users.update(v for k, v in frame.items() if k in ("to", "user", "username", "from") and type(v) is str)
    facts["users"] = users
    return facts


def _replay_for(header: Any) -> Any:
    if header.side == "server":
        return ServerReplay(header)
    if header.side == "client":
        from .client_replay import ClientReplay  # (the client's modules only for a client's journal)
        return ClientReplay(header)
    raise JournalError(f"a journal of side {header.side!r}")


def _debug(replay: Any, event: Event, why: str, effects: list[Any] | None = None) -> None:
    """Stop in pdb with ``rules``, ``event``, ``replay`` (and ``effects``) at hand; ``c`` goes on."""
    rules = replay.rules   # noqa: F841  (for the person at the prompt)
    print(f"-- {why}. At hand: rules, event ({event.op} {event.args!r:.120}), replay, effects; "
          "c goes on --", file=sys.stderr)
    debugger = pdb.Pdb()
    debugger.reset()
    debugger.interaction(sys._getframe(), None)   # (no tracing: c goes back to the replay)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="reactor-chat-replay", description=__doc__.split("\n")[0])
    parser.add_argument("journal", help="the journal (a recording split by --record-max-bytes: its last file)")
    parser.add_argument("--print", action="store_true", dest="timeline", help="print a timeline, one line an event")
    parser.add_argument("--user", metavar="NAME", help="with --print: only the events that concern NAME")
    parser.add_argument("--until", type=int, metavar="N", help="stop after event N")
    parser.add_argument("--pdb", type=Condition, nargs="?", const=Condition("departure"), metavar="N|user=NAME,...",
                        help="stop in the debugger right before event N, or before the first event that matches "
                             "(user=NAME,frame=TYPE; also op=OP, conn=N); without a value: at a departure")
    parser.add_argument("--screen", action="store_true",
                        help="a client's journal: write to standard output what its terminal showed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.CRITICAL)   # the rules' own log lines are the recording's, not news
    try:
        journal = open_journal(args.journal)
        replay = _replay_for(journal.header)
    except (OSError, JournalError) as exc:
        print(f"Error. {args.journal}: {exc}", file=sys.stderr)
        return 2
    header = journal.header
    wall_offset = header.args.get("wall_offset")
    timeline = ServerTimeline(replay.rules, wall_offset) if args.timeline and replay.side == "server" else None
    if args.timeline and replay.side == "client":
        timeline = replay.timeline()
    if args.screen and replay.side == "client":
        replay.show_screen(sys.stdout.buffer)
    condition: Condition | None = args.pdb
    count = 0
    first_now = last_now = None
    started = time.perf_counter()
    try:
        for event in journal.events():
            if args.until is not None and event.number > args.until:
                break
            if condition is not None and condition.matches(replay, event):
                _debug(replay, event, f"before event #{event.number}")
            if timeline is not None:
                timeline.before(event)
            try:
                effects = replay.apply(event)
            except Departure as departure:
                _say_departure(departure, timeline, wall_offset)
                if condition is not None:
                    _debug(replay, event, f"at the departure, event #{event.number}", departure.effects)
                return 1
            except JournalError:
                raise
            except Exception:
                print(f"event #{event.number} (line {event.line}): the rules raised:", file=sys.stderr)
                traceback.print_exc()
                if condition is not None:
                    pdb.post_mortem(sys.exc_info()[2])
                return 1
            count += 1
            if first_now is None:
                first_now = event.now
            last_now = event.now
            if timeline is not None and (effects or event.op != "e"):   # (a turn's end that did nothing: quiet)
                line = timeline.line(event, effects)
                if args.user is None or timeline.involves(args.user):
                    print(line)
    except JournalError as exc:
        print(f"Error. {args.journal}: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.screen and replay.side == "client":
            sys.stdout.buffer.flush()
    sys.stdout.flush()   # (the timeline before the summary)
    took = time.perf_counter() - started
    span = (last_now - first_now) if first_now is not None and last_now is not None else 0.0
    speed = f", {span / took:,.0f} times real speed" if took > 0 and span > 0 else ""
    print(f"replayed {count} events ({span:,.1f} s of recording) in {took:.2f} s{speed}: every event's effects as "
          "recorded", file=sys.stderr)
    return 0


def _say_departure(departure: Departure, timeline: Any, wall_offset: float | None) -> None:
    event = departure.event
    if timeline is not None:
        print(timeline.line(event, departure.effects))
    print(f"{clock(event.now, wall_offset)} the replay departs from the recording at event #{event.number} "
          f"(line {event.line}: {event.op} {event.args!r:.200}): {departure.why}", file=sys.stderr)
    if departure.effects:
        print("the replay's effects:", file=sys.stderr)
        for effect in departure.effects:
            print(f"  {effect!r:.300}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
