"""A real Prometheus scrapes the real server's metrics endpoint (``--metrics``) on loopback while real clients chat,
and its query API reads the values back: users online after two logins, messages relayed after a burst, their
rate, and the login failure alert's expression during a surge of failed logins."""
import time

import pytest

from tests.prometheus import PrometheusProcess
from tests.support import NO_LIMITS, PATIENCE, ServerProcess, scrape

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
    server = ServerProcess(tmp_path, extra=("--metrics", "127.0.0.1:0", *NO_LIMITS))
    host, port = server.metrics_address
    prometheus = PrometheusProcess([f"{host}:{port}"]).start()
    yield server, prometheus
    prometheus.stop()
    server.stop()


def test_prometheus_reads_users_online_and_messages_relayed_from_the_real_server(scraped):
    server, prometheus = scraped
    settle(prometheus, 'up{job="chat"}', lambda v: v == 1)
    assert settle(prometheus, "chat_users_online", lambda v: True) == 0
    yoda, luke = server.client(), server.client()
    yoda.login("yoda")
    luke.login("luke")
    settle(prometheus, "chat_users_online", lambda v: v == 2)
    assert settle(prometheus, "chat_logins_succeeded_total", lambda v: v == 2) == 2
    for step in range(5):   # a burst, in steps Prometheus sees as a rate
        for i in range(200):
            yoda.send({"type": "message", "to": "luke", "text": f"burst {step} {i}"})
        luke.until("message", text=f"burst {step} 199")
        time.sleep(0.25)
    settle(prometheus, "chat_messages_relayed_total", lambda v: v == 1000)
    rate = settle(prometheus, "rate(chat_messages_relayed_total[1m])", lambda v: v > 0)
    print(f"\nrate(chat_messages_relayed_total[1m]) = {rate:.1f}/s")
    assert settle(prometheus, "chat_bytes_received_total", lambda v: v > 1000 * 40) > 0   # the burst's bytes in
    settle(prometheus, 'chat_messages_refused_total{reason="rate_limited"}', lambda v: v == 0)
    assert settle(prometheus, "histogram_quantile(0.99, rate(chat_loop_turn_seconds_bucket[1m]))",
                  lambda v: v == v) < 0.05   # (v == v: not NaN)
    assert scrape(server.metrics_address, "/readyz") == (200, "ready\n")
    yoda.close()
    luke.close()


def test_the_login_failure_alert_expression_sees_a_surge(scraped):
    server, prometheus = scraped
    settle(prometheus, 'up{job="chat"}', lambda v: v == 1)
    for _ in range(5):   # 10 unknown names each, the 10th of which closes the connection: 55 failed logins
        client = server.client()
        for i in range(10):
            client.send({"type": "username", "username": f"nobody{i}"})
        client.expect_closed()
        client.close()
    settle(prometheus, 'chat_logins_failed_total{reason="unknown_user"}', lambda v: v == 50)
    settle(prometheus, 'sum(increase(chat_logins_failed_total[1m])) > 20', lambda v: v >= 20)
