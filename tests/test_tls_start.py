"""Starting in TLS mode, as a person meets it: a TLS client at a plaintext server is told so, a server warns of a
certificate that has expired or soon will, and a TLS client without the ``cryptography`` library chats on without
private chats."""
import datetime
import subprocess
import sys
import time

import pytest

from reactor.tls import certificate_expiry
from server_main import warn_of_expiry
from tests.support import PATIENCE, ROOT, ClientProcess, ServerProcess, coverage_env, tls_server, wait_for

NOW = datetime.datetime.now(datetime.UTC)


# -- when a certificate expires -------------------------------------------------------------------

def test_the_expiry_of_a_certificate_file_is_read_from_its_first_certificate(certs, ca, tmp_path):
    in_five_days = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=5)   # (made before now)
    assert in_five_days - datetime.timedelta(hours=1) < certificate_expiry(str(certs["soon"])) <= in_five_days
    assert certificate_expiry(str(certs["expired"])) < NOW
    late = tmp_path / "late.pem"      # after 2049: a GeneralizedTime, not a UTCTime
    ca.issue_cert("localhost", not_after=datetime.datetime(2101, 2, 3, 4, 5, 6, tzinfo=datetime.UTC)) \
        .private_key_and_cert_chain_pem.write_to_path(str(late))
    assert certificate_expiry(str(late)) == datetime.datetime(2101, 2, 3, 4, 5, 6, tzinfo=datetime.UTC)


@pytest.mark.parametrize("content", [b"", b"no certificate here", b"-----BEGIN CERTIFICATE-----\nAAAA\n"
                                     b"-----END CERTIFICATE-----\n", b"\xff\xfe"])
def test_a_file_that_holds_no_readable_certificate_has_no_expiry(tmp_path, content):
    path = tmp_path / "bad.pem"
    path.write_bytes(content)
    assert certificate_expiry(str(path)) is None
    assert certificate_expiry(str(tmp_path / "missing.pem")) is None


@pytest.mark.parametrize("cert, days, words", [
    ("expired", 0, "expired on"),
    ("soon", 0, "expires on"),
    ("soon", -10, None),                 # (as if 10 days ago: 15 days left)
    ("good", 0, None),
])
def test_the_server_warns_of_a_certificate_that_expired_or_expires_within_14_days(certs, caplog, cert, days, words):
    caplog.set_level("WARNING")
    warn_of_expiry(str(certs[cert]), NOW + datetime.timedelta(days=days))
    if words is None:
        assert caplog.messages == []
    else:
        assert len(caplog.messages) == 1 and words in caplog.messages[0] and str(certs[cert]) in caplog.messages[0]


@pytest.mark.e2e
@pytest.mark.parametrize("cert, words", [("soon", "expires on"), ("expired", "expired on")])
def test_e2e_the_real_server_warns_at_start(tmp_path, certs, cert, words):
    server = tls_server(tmp_path, certs[cert])
    try:
        wait_for(lambda: words in server.log(), what="the warning")
        assert "renew it" in server.log() or "clients refuse it" in server.log()
    finally:
        assert server.stop() == 0


# -- a TLS client at a plaintext server ------------------------------------------------------------

@pytest.mark.e2e
def test_e2e_a_tls_client_at_a_plaintext_server_is_told_the_port_does_not_speak_tls(tmp_path):
    """Whether its hello holds a line end (the server answers a bad frame) or not (the server answers at once,
    where it would have waited for the line's end): never OpenSSL's "wrong version number", never a wait."""
    server = ServerProcess(tmp_path)
    try:
        for _ in range(6):                # (random hellos: about a third hold a byte 0x0a)
            started = time.monotonic()
            client = ClientProcess(server.host, server.port, extra=("--tls",))
            try:
                assert client.wait() == 1
                assert client.text().strip() == (f"Error. Cannot connect to server at {server.host}:{server.port}: "
                                                 "the server does not speak TLS on this port")
                assert time.monotonic() - started < 5   # (the handshake's deadline is 10 s)
            finally:
                client.kill()
        assert server.client().login("yoda") == {"type": "welcome", "user": "yoda"}   # the server serves on
    finally:
        assert server.stop() == 0


# -- TLS without the cryptography library ------------------------------------------------------------

@pytest.mark.e2e
def test_e2e_tls_without_the_cryptography_library_chats_but_has_no_private_chats(tmp_path, certs):
    """-S: no site-packages, so no cryptography: the client starts, says private chats are unavailable and why,
    and refuses startprivate with that reason; others asking it are told it cannot accept."""
    server = tls_server(tmp_path, certs["good"])
    client = subprocess.Popen([sys.executable, "-S", str(ROOT / "client_main.py"), "127.0.0.1", str(server.port),
                               "--ca", str(certs["ca"])], cwd=tmp_path, env=coverage_env(), text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = client.communicate(f"hans\n{'falcon*solo'}\nstartprivate yoda\nwhoelse\n", timeout=PATIENCE)
        why = "they need the cryptography package in TLS mode (pip install 'reactor-chat[tls]')"
        assert err.strip() == f"Private chats are unavailable: {why}"
        assert f"Error. Private chats are unavailable: {why}" in out.splitlines()
        assert "Welcome to the greatest messaging application ever!" in out and client.returncode == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        assert server.stop() == 0
