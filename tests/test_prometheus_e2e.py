"""A real Prometheus scrapes the metrics endpoint on loopback, and its query API reads the values back.

The endpoint is served by the stand-in server of tests/ops_harness.py (the real loop, the real endpoint,
the chat's registry over a fake chat) until the hosts carry it; its stdin stands for what users do.
"""
import time

import pytest

from tests.ops_harness import HarnessProcess
from tests.prometheus import PrometheusProcess
from tests.support import PATIENCE

pytestmark = pytest.mark.e2e


def settle(prometheus, expression, wanted, timeout=PATIENCE):
    """Query until ``expression`` has one series whose value satisfies ``wanted``; that value."""
    deadline = time.monotonic() + timeout
    while True:
        result = prometheus.query(expression)
        if len(result) == 1 and wanted(result[0][1]):
            return result[0][1]
        assert time.monotonic() < deadline, f"{expression}: {result}\n{prometheus.log()[-2000:]}"
        time.sleep(0.1)


@pytest.fixture
def scraped(tmp_path):
    harness = HarnessProcess(tmp_path, "--metrics", "127.0.0.1:0")
    host, port = harness.metrics_address
    prometheus = PrometheusProcess([f"{host}:{port}"]).start()
    yield harness, prometheus
    prometheus.stop()
    harness.stop()


def test_prometheus_reads_users_online_and_messages_relayed(scraped):
    harness, prometheus = scraped
    settle(prometheus, 'up{job="chat"}', lambda v: v == 1)
    assert settle(prometheus, "chat_users_online", lambda v: True) == 0
    harness.tell("login alice")
    harness.tell("login bob")
    settle(prometheus, "chat_users_online", lambda v: v == 2)
    assert settle(prometheus, "chat_logins_succeeded_total", lambda v: v == 2) == 2
    for _ in range(5):   # a burst, in steps Prometheus sees as a rate
        harness.tell("relay 200")
        time.sleep(0.25)
    settle(prometheus, "chat_messages_relayed_total", lambda v: v == 1000)
    rate = settle(prometheus, "rate(chat_messages_relayed_total[1m])", lambda v: v > 0)
    print(f"\nrate(chat_messages_relayed_total[1m]) = {rate:.1f}/s")
    settle(prometheus, 'chat_messages_refused_total{reason="rate_limited"}', lambda v: v == 0)
    assert settle(prometheus, "histogram_quantile(0.99, rate(chat_loop_turn_seconds_bucket[1m]))",
                  lambda v: v == v) < 0.05   # (v == v: not NaN)


def test_the_login_failure_alert_expression_sees_a_surge(scraped):
    harness, prometheus = scraped
    settle(prometheus, 'up{job="chat"}', lambda v: v == 1)
    harness.tell("fail 50")
    settle(prometheus, 'sum(increase(chat_logins_failed_total[1m])) > 20', lambda v: v >= 20)
