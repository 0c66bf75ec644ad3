"""Reads a SQLite write-ahead log as SQLite's recovery will, to tell what recovery is about to discard.

A state file in WAL mode keeps its newest transactions in ``<file>-wal`` until a checkpoint copies them into
the file. After a crash SQLite's recovery replays the log's frames in order and stops at the first frame that
fails its checksum (or whose salt is not the log's): that frame and all after it are dropped without a word,
and once the server writes again they are overwritten. A log damaged in its middle (a bad disk, a bad copy)
so lost 23 of 40 confirmed messages silently. ``inspect_wal`` replays the same checks on its own, without
SQLite, so the store can say what will be lost and keep the log as found before SQLite touches it.

The format (https://www.sqlite.org/fileformat2.html#walformat): a 32-byte header (magic, version, page size,
checkpoint sequence, two salts, a checksum of the first 24 bytes), then frames of a 24-byte header (page
number, the database's size in pages for the last frame of a transaction (a commit frame) else 0, the two
salts, a checksum) and one page. A frame's checksum continues the one before it over its first 8 header bytes
and its page, as 32-bit words, big-endian if the magic's last bit is set, else little-endian. Recovery applies
the valid frames up to the last commit frame among them. Frames after a checkpoint reset the log carry new
salts; frames left beyond them from before the reset carry old ones and were applied long ago: not counted.
"""
from __future__ import annotations

import os
import shutil
import struct
import time
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["WalReport", "inspect_wal", "keep_copy"]

_MAGIC = 0x377F0682   # (| 1: big-endian checksums)
_VERSION = 3007000
_HEADER = struct.Struct(">8I")
_FRAME_HEADER = struct.Struct(">6I")
_MASK = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class WalReport:
    """What recovery will make of a write-ahead log of ``size`` bytes: ``discarded`` frames (``transactions`` of
    them commit frames: whole transactions lost) of ``frames``; ``bad_frame`` the first that fails its checks
    (1-based) when frames written after it are discarded, else None (a transaction never committed);
    ``bad_header``: the header fails its checks, and recovery ignores the whole log."""
    size: int
    frames: int
    discarded: int
    transactions: int
    bad_frame: int | None
    bad_header: bool = False

    def describe(self) -> str:
        """For the log: how many frames are lost, and why."""
        if self.bad_header:
            return (f"its header is damaged: all of it is ignored ({self.size} bytes, {self.discarded} frames, "
                    f"{self.transactions} transactions)")
        if self.bad_frame is not None:
            return (f"frame {self.bad_frame} of {self.frames} fails its checks: {self.discarded} frames "
                    f"({self.transactions} transactions) from there on are discarded")
        return f"{self.discarded} frames of a transaction never committed are discarded"


def inspect_wal(path: str) -> WalReport | None:
    """What recovery will make of the log at ``path``; None if there is none, or it loses nothing."""
    try:
        wal = open(path, "rb")
    except FileNotFoundError:
        return None
    with wal:
        header = wal.read(_HEADER.size)
        size = os.fstat(wal.fileno()).st_size
        if len(header) < _HEADER.size:
            return None   # (a log whose header was never written holds no frame)
        magic, version, page_size, _, salt1, salt2, check1, check2 = _HEADER.unpack(header)
        if magic & ~1 != _MAGIC or page_size & (page_size - 1) or not 512 <= page_size <= 65536:
            return WalReport(size, 0, 0, 0, None, bad_header=True)   # frames cannot even be told apart
        big = bool(magic & 1)
        frame_size = _FRAME_HEADER.size + page_size
        frames = (size - _HEADER.size) // frame_size
        sums = _checksum(header[:24], 0, 0, big)
        if sums != (check1, check2) or version != _VERSION:
            heads = [_frame_header(wal, frame_size, k) for k in range(frames)]
            return WalReport(size, frames, frames, sum(bool(h[1]) for h in heads), None, bad_header=True)
        applied = valid = 0
        for k in range(frames):   # (frame k + 1) as recovery reads it
            frame = wal.read(frame_size)
            page, commit, s1, s2, f1, f2 = _FRAME_HEADER.unpack_from(frame)
            if page == 0 or (s1, s2) != (salt1, salt2):
                break
            sums = _checksum(frame[24:], *_checksum(frame[:8], *sums, big), big)
            if sums != (f1, f2):
                break
            valid = k + 1
            if commit:
                applied = k + 1
        # Recovery stopped at frame index ``valid``: if that frame or any after it is of this log (its salts),
        # it was damaged (else it and those after it are left from before the log was last reset).
        if valid < frames:
            stop = _frame_header(wal, frame_size, valid)
            later = [h for h in (_frame_header(wal, frame_size, k) for k in range(valid + 1, frames))
                     if (h[2], h[3]) == (salt1, salt2)]
            if later or (stop[2], stop[3]) == (salt1, salt2):
                lost = [stop, *later]
                return WalReport(size, frames, valid - applied + len(lost), sum(bool(h[1]) for h in lost), valid + 1)
        if valid > applied:
            return WalReport(size, frames, valid - applied, 0, None)
        return None


def keep_copy(path: str) -> str:
    """Copy the log at ``path`` beside it, as ``<path>.damaged-<when>``, synced to disk; the copy's name."""
    base = f"{path}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
    copy, n = base, 1
    while os.path.lexists(copy):
        copy, n = f"{base}.{n}", n + 1
    with open(path, "rb") as source, open(copy, "xb") as target:
        shutil.copyfileobj(source, target, 1 << 20)
        target.flush()
        os.fsync(target.fileno())
    return copy


def _checksum(data: bytes, s0: int, s1: int, big: bool) -> tuple[int, int]:
    """SQLite's WAL checksum of ``data`` (a multiple of 8 bytes) continuing from (s0, s1)."""
    words = struct.unpack(f"{'>' if big else '<'}{len(data) // 4}I", data)
    pairs = iter(words)
    for a, b in zip(pairs, pairs, strict=True):
        s0 = (s0 + a + s1) & _MASK
        s1 = (s1 + b + s0) & _MASK
    return s0, s1


def _frame_header(wal: BinaryIO, frame_size: int, k: int) -> tuple[int, ...]:
    """Frame k + 1's header: page, commit, salt 1, salt 2, checksum 1, checksum 2."""
    wal.seek(_HEADER.size + k * frame_size)
    return _FRAME_HEADER.unpack(wal.read(_FRAME_HEADER.size))
