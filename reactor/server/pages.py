"""Long lists of user names cut into pages, each of which fits in a frame the client takes.

A ``users`` answer (``whoelse``, ``whoelsesince``) or a ``presence`` notice
lists names: at 10,000 users with Cyrillic or CJK names one list is 150-300 KB
of JSON, far over the 64 KiB a frame may have (``reactor.framing.MAX_FRAME``),
and a client cuts off a server that sends more. So a list goes out in pages:
each holds names of at most ``PAGE_BYTES`` bytes, counting a name's UTF-8
and 3 bytes for its quotes and comma. JSON escapes at most double a name's
bytes on the wire (it escapes only a quote or a backslash: a user name holds
no control character), so a page's frame stays under 64,100 bytes whatever
the names. The pages of a list are its names in order, none empty unless the
list is: a list of N names is N names in its pages, whatever the cuts.
"""
from __future__ import annotations

from ..protocol import MAX_USERNAME, Frame, FrameType

__all__ = ["PAGE_BYTES", "page_bytes", "page_starts", "pages", "users_frames"]

PAGE_BYTES = 32_000   # bytes of names in one page, as counted here: twice this, and a frame's other fields, < 64 KiB
# This many names fit in a page whatever they are (a name has at most MAX_USERNAME characters, 4 bytes each):
# a list no longer is one page without looking at its names. Most lists are short (a turn's logins), and
# measuring each name costs about 0.1 us.
_ALWAYS_FIT = PAGE_BYTES // (4 * MAX_USERNAME + 3)
_USERS = FrameType.USERS.value
_GAP = "\n\n\n"   # between names, as long as page_bytes counts besides a name's UTF-8
_GAP_BYTES = _GAP.encode()


def page_bytes(name: str) -> int:
    """What ``name`` counts in a page: its UTF-8 and 3 bytes for its quotes and comma."""
    return (len(name) if name.isascii() else len(name.encode("utf-8", "surrogatepass"))) + 3


def page_starts(names: list[str]) -> list[int]:
    """The index in ``names`` where each page starts: ``[0]`` for a list that is one page.

    The names joined by ``_GAP`` (3 bytes, as a page counts each name: no name holds a newline, and none is
    empty) are the bytes the pages count, so each cut is one ``rfind`` and a ``count`` in C, not a step of
    Python per name: 10,000 names (half Cyrillic, half CJK) 21.6 -> 5.7 million instructions (callgrind),
    about 1.5 -> 0.4 ms, much of what a version 3 login costs at 10,000 users online."""
    if len(names) <= _ALWAYS_FIT:
        return [0]
    text = (_GAP.join(names) + _GAP).encode("utf-8", "surrogatepass")
    gap = _GAP_BYTES
    starts = [0]
    at = 0   # the byte where the page starts
    while len(text) - at > PAGE_BYTES:
        end = text.rfind(gap, at, at + PAGE_BYTES)   # the page ends with the last name that fits whole
        if end < at:   # (a name longer than a page, which no name is: alone on its page)
            end = text.find(gap, at)
        end += len(gap)
        starts.append(starts[-1] + text.count(gap, at, end))
        at = end
    return starts


def pages(names: list[str]) -> list[list[str]]:
    """``names`` cut into pages, in order (one page, ``names`` itself, when it fits)."""
    starts = page_starts(names)
    if len(starts) == 1:
        return [names]
    return [names[start:end] for start, end in zip(starts, [*starts[1:], len(names)], strict=True)]


def users_frames(names: list[str], away: list[str] | None = None) -> list[Frame]:
    """The ``users`` frames listing ``names``: one a page, each but the last marked ``"more": true``. Given
    ``away`` (those of ``names`` who are away), a page lists its own of them again in ``"away"``, and a name
    away counts twice toward its page's bytes."""
    if not away:
        *first, last = pages(names)
        return [*({"type": _USERS, "names": page, "more": True} for page in first), {"type": _USERS, "names": last}]
    marked = set(away)
    starts = page_starts([name * 2 if name in marked else name for name in names])
    frames: list[Frame] = []
    for start, end in zip(starts, [*starts[1:], len(names)], strict=True):
        page = names[start:end]
        frame: Frame = {"type": _USERS, "names": page}
        if end < len(names):
            frame["more"] = True
        here = [name for name in page if name in marked]
        if here:
            frame["away"] = here
        frames.append(frame)
    return frames
