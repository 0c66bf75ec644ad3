"""Metrics as Prometheus scrapes them: a declared table, counts the hosts bump, and the text exposition format.

Each ``Metric`` of a table says where its figure comes from, one of two ways:

- ``counted``: an attribute of a counts object the host bumps where the event happens
  (``counts.messages_relayed += 1``: a slotted int, ~19 ns; a labelled counter is a ``LabelCounts`` whose
  attributes are its label's values, ``counts.messages_refused.rate_limited += 1``, as cheap; a dict keyed by
  the labels would cost ~73 ns). Cheap enough for the relay's hot path (~9 us a message), and nothing is
  looked up by name there.
- ``source``: a callback the host provides (``Registry.provide``), called when Prometheus asks: gauges
  (users online: the length of a dict) and counts another layer keeps anyway (the loop's turns).

A label's values are declared in the table, never taken from the network (no user names, no addresses):
the set of series cannot grow, whatever peers do. A value a callback or ``LabelCounts.add`` does not know
is counted under ``other``, or dropped from a callback's mapping.

A scrape is cheap and its cost does not grow with the users: every series' text but its value is made
once, when the registry is built, so a scrape costs one call per ``source`` and one number formatted per
series (the chat table's ~80 series: ~30 us, CPython 3.11; ``tests/test_ops_metrics.py`` measures it
with 10,000 users).
"""
from __future__ import annotations

import bisect
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)

Kind = Literal["counter", "gauge", "histogram"]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"   # Prometheus's text exposition format
OTHER = "other"   # the label value a LabelCounts counts what it does not know under
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


@dataclass(frozen=True)
class Metric:
    """One metric of a table: its name, kind and help, where its figure comes from, and its one label.

    ``counted``: the attribute of the counts object that holds it; ``source``: the name of the callback
    read at scrape time (exactly one of the two). A labelled metric (``label`` with its ``values``) is
    counted in a ``LabelCounts`` or read as a mapping of value to figure. A histogram has no label; counted,
    it is a ``Histogram``; read, the callback returns something with ``bounds``, ``buckets``, ``sum``, ``count``.
    """

    name: str
    kind: Kind
    help: str
    counted: str = ""
    source: str = ""
    label: str = ""
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        if not _NAME.match(self.name):
            problems.append("not a Prometheus metric name")
        if bool(self.counted) == bool(self.source):
            problems.append("needs exactly one of counted and source")
        if bool(self.label) != bool(self.values):
            problems.append("a label goes with its values")
        if self.label and not (_LABEL.match(self.label) and self.label != "le"):
            problems.append(f"{self.label!r} is not a label name")
        if self.kind == "counter" and not self.name.endswith("_total"):
            problems.append("a counter's name ends in _total")
        if self.kind == "histogram" and self.label:
            problems.append("a histogram has no label")
        if len(set(self.values)) != len(self.values):
            problems.append("a label value twice")
        if problems:
            raise ValueError(f"metric {self.name}: " + "; ".join(problems))


class LabelCounts:
    """The counts of one labelled counter: a subclass's ``__slots__`` are the label's values, ``other`` among them.

    ``counts.some_family.some_value += 1`` where the value is known when the code is written;
    ``add(value)`` where it comes from elsewhere (a value not declared counts as ``other``).
    """

    __slots__: tuple[str, ...] = ()

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def add(self, value: str, n: int = 1) -> None:
        name = value if value in self.__slots__ else OTHER
        setattr(self, name, getattr(self, name) + n)

    def get(self, value: str) -> int:
        count: int = getattr(self, value)
        return count


class HistogramData(Protocol):
    """A histogram's figures: ``buckets[i]`` observations up to ``bounds[i]`` (seconds) and above the one before;
    the last bucket, beyond the last bound."""

    @property
    def bounds(self) -> Sequence[float]: ...
    @property
    def buckets(self) -> Sequence[int]: ...
    @property
    def sum(self) -> float: ...
    @property
    def count(self) -> int: ...


class Observer(Protocol):
    """What times something tells each duration to (a ``Histogram``): the store's commits, the engine's replies."""

    def observe(self, value: float) -> None: ...


class Histogram:
    """Observations counted in bands: ``observe`` costs a bisection and three additions."""

    __slots__ = ("bounds", "buckets", "sum", "count")

    def __init__(self, bounds: Sequence[float]) -> None:
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise ValueError("a histogram's bounds rise, one at least")
        self.bounds = tuple(bounds)
        self.buckets = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


def format_number(value: float) -> str:
    """A sample's value as the text format writes it (``+Inf``, ``NaN``; ints without a point)."""
    if type(value) is int:
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    return str(int(value)) if isinstance(value, bool | int) else repr(float(value))


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{name}="{escape_label_value(value)}"' for name, value in pairs) + "}" if pairs else ""


class _Plan:
    """One metric as a scrape renders it: its header and each series' text but the value, made once."""

    __slots__ = ("metric", "header", "series", "read", "bounds")

    def __init__(self, metric: Metric, header: str, series: list[str], read: Callable[[], Any]) -> None:
        self.metric = metric
        self.header = header
        self.series = series   # each series' name and labels, a space after
        self.read = read       # the values in the order of ``series``; a histogram's: its HistogramData
        self.bounds: tuple[float, ...] = ()   # a histogram's, as ``series`` spells them


class Registry:
    """A table of metrics, the counts object that holds the counted ones, and the callbacks of the others.

    ``labels`` are added to every series (in cluster mode, the node's id). ``render`` is the text format;
    a metric whose source was not provided (cluster mode's, on a single server) is left out, as is one
    whose callback raised (logged).
    """

    def __init__(self, metrics: Sequence[Metric], counts: object, labels: Mapping[str, str] | None = None) -> None:
        names = [m.name for m in metrics]
        if len(set(names)) != len(names):
            raise ValueError("a metric name twice")
        self._const = list((labels or {}).items())
        for name, _ in self._const:
            if not _LABEL.match(name) or name == "le" or any(name == m.label for m in metrics):
                raise ValueError(f"{name!r} cannot label every series")
        self._counts = counts
        self._sources: dict[str, Callable[[], Any]] = {}
        self._declared_sources = {m.source for m in metrics if m.source}
        self._plans = [self._plan(m) for m in metrics]

    @property
    def counts(self) -> Any:
        return self._counts

    @property
    def sources(self) -> frozenset[str]:
        """The sources its metrics are read from at scrape time."""
        return frozenset(self._declared_sources)

    def provide(self, source: str, callback: Callable[[], Any]) -> None:
        """The callback that gives the figure(s) of the metrics read from ``source`` at scrape time."""
        if source not in self._declared_sources:
            raise KeyError(f"no metric is read from {source!r}")
        self._sources[source] = callback

    def _plan(self, m: Metric) -> _Plan:
        help_text = m.help.replace("\\", "\\\\").replace("\n", "\\n")
        header = f"# HELP {m.name} {help_text}\n# TYPE {m.name} {m.kind}\n"
        sources = self._sources
        if m.kind == "histogram":   # series made at the first scrape (a source's bounds are known only then)
            if m.counted:
                getattr(self._counts, m.counted)   # (raises here, at start, for a table that does not fit)
                return _Plan(m, header, [], lambda: getattr(self._counts, m.counted))
            return _Plan(m, header, [], lambda: sources[m.source]())
        if m.label:
            series = [f"{m.name}{_labels([*self._const, (m.label, value)])} " for value in m.values]
        else:
            series = [f"{m.name}{_labels(self._const)} "]
        if m.counted:
            held = getattr(self._counts, m.counted)   # (raises here, at start, for a table that does not fit)
            if not m.label:
                return _Plan(m, header, series, lambda: [getattr(self._counts, m.counted)])
            if not isinstance(held, LabelCounts) or set(held.__slots__) != set(m.values) or OTHER not in m.values:
                raise ValueError(f"metric {m.name}: counts.{m.counted} is not a LabelCounts of {m.values}, "
                                 f"{OTHER!r} among them")
            return _Plan(m, header, series, lambda: [getattr(held, value) for value in m.values])
        if not m.label:
            return _Plan(m, header, series, lambda: [sources[m.source]()])
        return _Plan(m, header, series, lambda: [sources[m.source]().get(value, 0) for value in m.values])

    def _values(self, plan: _Plan) -> list[Any] | None:
        """The plan's values now; None if its source is not provided or failed."""
        m = plan.metric
        if m.source and m.source not in self._sources:
            return None
        try:
            values = plan.read()
            if m.kind == "histogram":
                values = self._histogram_values(plan, values)
        except Exception:
            log.exception("metric %s: its figures could not be read; left out of this scrape", m.name)
            return None
        return values   # type: ignore[no-any-return]

    def _histogram_values(self, plan: _Plan, data: HistogramData) -> list[float]:
        bounds = tuple(data.bounds)
        if bounds != plan.bounds:
            m = plan.metric
            buckets = [f"{m.name}_bucket{_labels([*self._const, ('le', format_number(float(b)))])} "
                       for b in [*bounds, math.inf]]
            plan.series = [*buckets, f"{m.name}_sum{_labels(self._const)} ", f"{m.name}_count{_labels(self._const)} "]
            plan.bounds = bounds
        if len(data.buckets) != len(bounds) + 1:
            raise ValueError(f"{len(data.buckets)} buckets for {len(bounds)} bounds")
        cumulative: list[float] = []
        running = 0
        for n in data.buckets:
            running += n
            cumulative.append(running)
        return [*cumulative, data.sum, data.count]

    def render(self) -> bytes:
        """Every metric, in the text exposition format."""
        out: list[str] = []
        for plan in self._plans:
            values = self._values(plan)
            if values is None:
                continue
            out.append(plan.header)
            out += [f"{series}{format_number(value)}\n" for series, value in zip(plan.series, values, strict=True)]
        return "".join(out).encode()

    def samples(self) -> list[tuple[str, float]]:
        """Each series (name and labels) and its figure, histograms by their sum and count alone: a table."""
        rows = []
        for plan in self._plans:
            values = self._values(plan)
            if values is None:
                continue
            if plan.metric.kind == "histogram":
                values, series = values[-2:], plan.series[-2:]
            else:
                series = plan.series
            rows += [(name.rstrip(), value) for name, value in zip(series, values, strict=True)]
        return rows
