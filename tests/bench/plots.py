"""The bench's figures as pictures (PNG, matplotlib's Agg backend): what ``run`` measured, drawn.

* ``relay.png``: delivered messages/s per peer, the median of the rounds with
  the spread [min-max] as an error bar;
* ``login-storm.png``: seconds until every user of a login storm is welcomed,
  against the number of users, one line per host; a storm cut off before all
  were in is drawn as an empty marker at the cut-off;
* ``latency.png``: the distribution of one-way message latency at the fixed
  offered load, one curve per host (share of messages slower than x, log-log,
  so the tail shows).

matplotlib is a bench-only dependency (``tests/bench/requirements.txt``); without it
the bench prints its table and says it drew nothing.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any

RELAY = "relay throughput, 500 pairs (msg/s)"
STORM = re.compile(r"login storm @(\d+)k: all welcome \(s\)")


def write(bench: Any, folder: str, labels: dict[str, str], peers: tuple[str, ...]) -> list[str]:
    """Draw what ``bench`` (a ``run.Bench``) measured into ``folder``; the paths written.

    ``labels``: host -> its name on the plots; ``peers``: the hosts of the relay comparison, in order.
    """
    try:
        import matplotlib
    except ImportError:
        print("plots: none (matplotlib is not installed; make bench installs tests/bench/requirements.txt)",
              file=sys.stderr)
        return []
    matplotlib.use("Agg")
    from matplotlib import pyplot

    os.makedirs(folder, exist_ok=True)
    written = []
    for name, draw in (("relay.png", _relay), ("login-storm.png", _login_storm), ("latency.png", _latency)):
        figure, axes = pyplot.subplots(figsize=(8, 4.5), dpi=110)
        if draw(bench, axes, labels, peers):
            figure.tight_layout()
            path = os.path.join(folder, name)
            figure.savefig(path)
            written.append(path)
        pyplot.close(figure)
    return written


def _relay(bench: Any, axes: Any, labels: dict, peers: tuple) -> bool:
    values = bench.figures.get(RELAY, {})
    hosts = [h for h in peers if isinstance(values.get(h), (int, float))]
    if not hosts:
        return False
    medians = [values[h] for h in hosts]
    spread = bench.spread.get(RELAY, {})
    low = [values[h] - spread.get(h, (values[h], values[h]))[0] for h in hosts]
    high = [spread.get(h, (values[h], values[h]))[1] - values[h] for h in hosts]
    colours = ["tab:green" if h == "reactor" else "tab:grey" if h == "relay" else "tab:blue" for h in hosts]
    bars = axes.bar([labels[h] for h in hosts], medians, yerr=[low, high], capsize=4, color=colours)
    for bar, value in zip(bars, medians, strict=True):
        axes.annotate(f"{value:,.0f}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom",
                      xytext=(0, 3), textcoords="offset points", fontsize=8)
    rounds = max(len(bench.rounds), 1)
    axes.set_title(f"Relay, 500 pairs: delivered messages/s (median of {rounds} round(s), bars: min-max)")
    axes.set_ylabel("messages/s")
    axes.grid(axis="y", alpha=0.3)
    return True


def _login_storm(bench: Any, axes: Any, labels: dict, peers: tuple) -> bool:
    cap = bench.settings.storm_cap
    drawn = False
    for host in [h for h in labels if h != "relay"]:
        points, cut = [], []
        for figure, values in bench.figures.items():
            match = STORM.fullmatch(figure)
            if not match or host not in values:
                continue
            users = int(match.group(1)) * 1000
            value = values[host]
            (points if isinstance(value, (int, float)) else cut).append((users, value))
        points.sort()
        if not points and not cut:
            continue
        line = axes.plot([u for u, _ in points], [v for _, v in points], marker="o", label=labels[host])[0]
        if cut:
            axes.plot([u for u, _ in cut], [cap] * len(cut), marker="o", linestyle="none", markerfacecolor="none",
                      color=line.get_color(), label=f"{labels[host]}: cut off at {cap:g} s")
        drawn = True
    if not drawn:
        return False
    axes.set_title("Login storm: seconds until every user is welcomed")
    axes.set_xlabel("users logging in at once")
    axes.set_ylabel("seconds")
    axes.set_yscale("log")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return True


def _latency(bench: Any, axes: Any, labels: dict, peers: tuple) -> bool:
    drawn = False
    for host in peers:
        samples = sorted(bench.samples.get(host, ()))
        if not samples:
            continue
        n = len(samples)
        slower = [1 - k / n for k in range(n)]  # share of messages at least this slow
        axes.step([x * 1e3 for x in samples], slower, where="post", label=f"{labels[host]} ({n:,} messages)")
        drawn = True
    if not drawn:
        return False
    axes.set_title("One-way latency at 5,000 messages/s, 1,000 clients: share of messages slower than x")
    axes.set_xlabel("latency (ms)")
    axes.set_ylabel("share slower")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8)
    return True
