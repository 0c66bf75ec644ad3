"""The metrics registry and the chat server's table: what a scrape says, read back with Prometheus's own parser."""
import logging
import math
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reactor.loop import TurnStats
from reactor.ops.catalog import CHAT_METRICS, ChatCounts, chat_registry, loop_turns
from reactor.ops.metrics import (
    OTHER,
    Histogram,
    LabelCounts,
    Metric,
    Registry,
    escape_label_value,
    format_number,
)


def parse(registry):
    """The scrape as Prometheus reads it: {family name: family}."""
    return {f.name: f for f in text_string_to_metric_families(registry.render().decode())}


def value(families, sample_name, **labels):
    """The value of the one sample called ``sample_name`` whose labels include ``labels``."""
    family = families[sample_name.removesuffix("_total").removesuffix("_bucket").removesuffix("_sum")
                      .removesuffix("_count")]
    found = [s.value for s in family.samples if s.name == sample_name and labels.items() <= s.labels.items()]
    assert len(found) == 1, (sample_name, labels, family.samples)
    return found[0]


def all_sources(registry, users=3):
    """Every scrape-time source of the chat table, as a host of ``users`` users would give them."""
    stats = TurnStats()
    stats.record(0.0002, 0.0001)
    stats.record(0.003, 0.002)
    figures = {"users_online": lambda: users, "connections": lambda: {"stranger": 2, "user": users},
               "bytes_received": lambda: 1234, "bytes_sent": lambda: 5678, "password_checks_pending": lambda: 1,
               "password_helper_restarts": lambda: 0, "stored_messages": lambda: 7, "stored_bytes": lambda: 700,
               "loop_turns": lambda: loop_turns(stats), "ready": lambda: True,
               "cluster_engine_connected": lambda: True, "cluster_commands_pending": lambda: 4,
               "cluster_fenced": lambda: False}
    for source in registry.sources:
        registry.provide(source, figures[source])
    return stats


# -- the chat table ----------------------------------------------------------------------------------------

def test_every_metric_of_the_chat_table_is_served_and_parses():
    registry = chat_registry("a")
    all_sources(registry)
    families = parse(registry)
    assert len(families) == len(CHAT_METRICS)   # (no two names the same once a counter's _total is taken off)
    for metric in CHAT_METRICS:
        family = families[metric.name.removesuffix("_total")]
        assert family.type == metric.kind
        assert family.documentation == metric.help
        if metric.label:
            assert {s.labels[metric.label] for s in family.samples} == set(metric.values)


def test_the_table_names_every_figure_the_issue_asks_for():
    names = {m.name for m in CHAT_METRICS}
    wanted = {"chat_users_online", "chat_connections", "chat_messages_relayed_total", "chat_messages_stored_total",
              "chat_messages_delivered_from_storage_total", "chat_messages_refused_total", "chat_broadcasts_total",
              "chat_bytes_received_total", "chat_bytes_sent_total", "chat_logins_succeeded_total",
              "chat_logins_failed_total", "chat_lockouts_total", "chat_stored_messages", "chat_stored_bytes",
              "chat_store_commit_seconds", "chat_loop_turn_seconds", "chat_password_checks_pending",
              "chat_password_helper_restarts_total", "chat_tls_handshakes_total", "chat_tls_handshake_failures_total",
              "chat_cluster_engine_round_trip_seconds", "chat_cluster_commands_pending", "chat_cluster_fenced"}
    assert wanted <= names
    refused = next(m for m in CHAT_METRICS if m.name == "chat_messages_refused_total")
    assert {"blocked", "rate_limited", "quota_exceeded", "queue_full", "too_long"} <= set(refused.values)


def test_the_counts_hold_exactly_the_counted_metrics():
    counted = [m.counted for m in CHAT_METRICS if m.counted]
    assert len(counted) == len(set(counted))
    assert set(counted) == set(ChatCounts.__slots__)


def test_no_label_can_hold_a_user_name_or_an_address():
    """Every label's values are declared: a source that names users, or an unknown reason, adds no series."""
    registry = chat_registry()
    all_sources(registry)
    registry.provide("connections", lambda: {"stranger": 1, "user": 2, "alice": 5, "10.0.0.7": 9})
    registry.counts.logins_failed.add("alice")
    registry.counts.messages_refused.add("10.0.0.7")
    text = registry.render().decode()
    assert "alice" not in text and "10.0.0.7" not in text
    families = parse(registry)
    assert value(families, "chat_logins_failed_total", reason=OTHER) == 1
    assert value(families, "chat_messages_refused_total", reason=OTHER) == 1
    assert value(families, "chat_connections", state="user") == 2
    for metric in CHAT_METRICS:
        assert metric.label in ("", "state", "reason", "cause", "command")


def test_counted_figures_are_what_the_host_bumped():
    registry = chat_registry()
    counts = registry.counts
    counts.messages_relayed += 41
    counts.messages_relayed += 1
    counts.messages_refused.rate_limited += 2
    counts.messages_refused.add("blocked")
    counts.logins_succeeded += 2
    counts.lockouts.passwords += 1
    counts.store_commit.observe(0.0007)
    counts.store_commit.observe(0.003)
    counts.store_commit.observe(9.0)   # beyond the last bound: only in +Inf
    families = parse(registry)
    assert value(families, "chat_messages_relayed_total") == 42
    assert value(families, "chat_messages_refused_total", reason="rate_limited") == 2
    assert value(families, "chat_messages_refused_total", reason="blocked") == 1
    assert value(families, "chat_messages_refused_total", reason="too_long") == 0
    assert value(families, "chat_logins_succeeded_total") == 2
    assert value(families, "chat_lockouts_total", cause="passwords") == 1
    assert value(families, "chat_store_commit_seconds_bucket", le="0.0005") == 0
    assert value(families, "chat_store_commit_seconds_bucket", le="0.001") == 1
    assert value(families, "chat_store_commit_seconds_bucket", le="0.005") == 2
    assert value(families, "chat_store_commit_seconds_bucket", le="2.5") == 2
    assert value(families, "chat_store_commit_seconds_bucket", le="+Inf") == 3
    assert value(families, "chat_store_commit_seconds_count") == 3
    assert value(families, "chat_store_commit_seconds_sum") == pytest.approx(9.0037)


def test_scrape_time_figures_are_read_when_asked():
    registry = chat_registry("a")
    users = [3]
    stats = all_sources(registry)
    registry.provide("users_online", lambda: users[0])
    assert value(parse(registry), "chat_users_online") == 3
    users[0] = 10_000
    stats.record(0.02, 0.02)
    families = parse(registry)
    assert value(families, "chat_users_online") == 10_000
    assert value(families, "chat_ready") == 1
    assert value(families, "chat_cluster_fenced") == 0
    assert value(families, "chat_loop_turn_seconds_count") == 3
    assert value(families, "chat_loop_turn_seconds_bucket", le="0.0005") == 1
    assert value(families, "chat_loop_turn_seconds_bucket", le="0.005") == 2
    assert value(families, "chat_loop_turn_seconds_bucket", le="0.01") == 2
    assert value(families, "chat_loop_turn_seconds_bucket", le="+Inf") == 3
    assert value(families, "chat_loop_turn_seconds_sum") == pytest.approx(0.0232)


def test_a_source_not_provided_is_left_out():
    registry = chat_registry("a")
    registry.provide("users_online", lambda: 1)
    families = parse(registry)
    assert "chat_users_online" in families and "chat_messages_relayed" in families
    assert "chat_cluster_fenced" not in families and "chat_loop_turn_seconds" not in families


def test_a_single_server_serves_no_cluster_figures():
    """Not even the counted ones, which would be 0: a single server has no engine to measure."""
    registry = chat_registry()
    all_sources(registry)
    families = parse(registry)
    assert not [name for name in families if name.startswith("chat_cluster_")]
    assert "chat_users_online" in families and "chat_loop_turn_seconds" in families


def test_a_failing_source_costs_only_its_own_metric(caplog):
    registry = chat_registry()
    all_sources(registry)
    registry.provide("stored_bytes", lambda: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="reactor.ops.metrics"):
        families = parse(registry)
    assert "chat_stored_bytes" not in families
    assert value(families, "chat_stored_messages") == 7
    assert "chat_stored_bytes" in caplog.text


def test_an_undeclared_source_is_refused():
    with pytest.raises(KeyError):
        chat_registry().provide("users_offline", lambda: 0)


def test_a_node_id_labels_every_series():
    registry = chat_registry("node-a")
    all_sources(registry)
    families = parse(registry)
    samples = [s for f in families.values() for s in f.samples]
    assert samples and all(s.labels.get("node") == "node-a" for s in samples)


def test_the_stats_table_has_every_series_but_the_buckets():
    registry = chat_registry()
    all_sources(registry)
    registry.counts.broadcasts += 5
    rows = dict(registry.samples())
    assert rows["chat_broadcasts_total"] == 5
    assert rows["chat_users_online"] == 3
    assert rows['chat_connections{state="stranger"}'] == 2
    assert rows["chat_loop_turn_seconds_count"] == 2
    assert not any("_bucket" in name for name in rows)


# -- the registry's rules ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, complaint", [
    (dict(name="x_total", kind="counter", help="h"), "exactly one of counted and source"),
    (dict(name="x", kind="counter", help="h", counted="x"), "ends in _total"),
    (dict(name="x-y", kind="gauge", help="h", counted="x"), "not a Prometheus metric name"),
    (dict(name="x", kind="gauge", help="h", counted="x", label="l"), "a label goes with its values"),
    (dict(name="x", kind="gauge", help="h", counted="x", label="le", values=("a",)), "is not a label name"),
    (dict(name="x", kind="histogram", help="h", counted="x", label="l", values=("a",)), "a histogram has no label"),
    (dict(name="x", kind="gauge", help="h", counted="x", label="l", values=("a", "a")), "a label value twice"),
])
def test_a_metric_that_breaks_the_rules_is_refused(kwargs, complaint):
    with pytest.raises(ValueError, match=complaint):
        Metric(**kwargs)


class Two(LabelCounts):
    __slots__ = ("a", OTHER)


class Counts:
    def __init__(self):
        self.n = 0
        self.two = Two()


def test_a_table_that_does_not_fit_its_counts_is_refused_at_start():
    with pytest.raises(AttributeError):
        Registry([Metric("x_total", "counter", "h", counted="missing")], Counts())
    with pytest.raises(ValueError, match="not a LabelCounts"):
        Registry([Metric("x_total", "counter", "h", counted="two", label="l", values=("a", "b", OTHER))], Counts())
    with pytest.raises(ValueError, match="twice"):
        Registry([Metric("x_total", "counter", "h", counted="n")] * 2, Counts())
    with pytest.raises(ValueError, match="cannot label every series"):
        Registry([Metric("x_total", "counter", "h", counted="two", label="l", values=("a", OTHER))], Counts(),
                 {"l": "v"})


def test_help_and_label_values_are_escaped():
    registry = Registry([Metric("x_total", "counter", 'a \\ back\nslash', counted="n")], Counts(),
                        {"node": 'q"\\\n'})
    assert escape_label_value('q"\\\n') == 'q\\"\\\\\\n'
    family = parse(registry)["x"]
    assert family.documentation == 'a \\ back\nslash'
    assert family.samples[0].labels == {"node": 'q"\\\n'}


def test_numbers_are_written_as_the_text_format_wants():
    assert [format_number(v) for v in (0, 7, True, 0.25, 1e-05, math.inf, -math.inf)] == \
        ["0", "7", "1", "0.25", "1e-05", "+Inf", "-Inf"]
    assert format_number(math.nan) == "NaN"


def test_a_histogram_counts_each_value_in_its_band():
    histogram = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 3.0):
        histogram.observe(v)
    assert histogram.buckets == [2, 2, 1]   # (a value on a bound is in that bound's band: le)
    assert histogram.count == 5 and histogram.sum == pytest.approx(4.65)
    with pytest.raises(ValueError):
        Histogram((1.0, 0.5))


def test_a_histogram_source_whose_buckets_do_not_match_is_left_out():
    class Bad:
        bounds, buckets, sum, count = (0.1,), [1], 0.0, 1
    registry = Registry([Metric("h_seconds", "histogram", "h", source="h")], Counts())
    registry.provide("h", Bad)
    assert registry.render() == b""


# -- cost ----------------------------------------------------------------------------------------------------

def test_a_scrape_of_ten_thousand_users_costs_well_under_a_millisecond():
    """The render does not grow with the users: their figures are counts the host keeps (the lengths of its
    dicts). Measured: ~30 us for the chat table on this machine; the bound leaves room for a loaded one."""
    sessions = {f"user{i}": object() for i in range(10_000)}
    strangers = {i: "127.0.0.1" for i in range(100)}
    registry = chat_registry("a")
    all_sources(registry)
    registry.provide("users_online", lambda: len(sessions))
    registry.provide("connections", lambda: {"stranger": len(strangers), "user": len(sessions)})
    registry.render()
    best = math.inf
    for _ in range(5):
        start = time.thread_time()
        for _ in range(100):
            registry.render()
        best = min(best, (time.thread_time() - start) / 100)
    assert best < 0.001, f"{best * 1e6:.0f} us a scrape"
