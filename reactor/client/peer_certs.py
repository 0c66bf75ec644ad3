"""The client's key pair and certificate for one session, and the TLS contexts of its private chats.

In TLS mode a private chat runs over TLS between the two clients, each side
pinned to the other's certificate, which the server relays (over the TLS
server link) with the chat's token, as WebRTC's signalling carries DTLS
fingerprints. Each client makes a fresh EC P-256 key and a self-signed
certificate valid for a day when it starts: nothing is kept on disk.

Python's ``ssl`` cannot accept a certificate it cannot verify and let the
caller check its fingerprint afterwards (there is no verify callback, and a
TLS server that asks for a client certificate verifies it during the
handshake). So the server relays the whole certificate, not only its
fingerprint, and a peer connection's context trusts exactly the certificates
it expects (``cadata``): a relay that presents any other certificate, on
either side, fails the handshake. The SHA-256 fingerprint of the certificate
presented is then compared with the expected one (``fingerprint``) by the chat
logic. The listener's context trusts the certificates of every client expected,
each loaded on its own: what one peer relayed as its certificate may be junk
(only the server checked it, for being short base64), and junk left out spoils
nobody else's (loaded together, it failed the load, and every genuine peer
was reset while one junk certificate was expected).

The standard library cannot make a certificate, so ``PeerIdentity.generate``
takes it from ``cryptography``, imported there and only there: the plaintext
default never imports it (``pip install 'reactor-chat[tls]'``).
"""
from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import logging
import os
import ssl
import tempfile
from collections.abc import Iterable

from ..protocol import MAX_CERT

log = logging.getLogger(__name__)

VALIDITY = datetime.timedelta(days=1)    # a session's certificate is good for this long
CLOCK_SKEW = datetime.timedelta(minutes=5)   # and from this long before it was made


class MissingLibrary(Exception):
    """``cryptography`` is not installed: TLS mode cannot make its private-chat certificate (the message says
    why private chats are unavailable)."""


class NoUsableCertificate(ssl.SSLError):
    """None of the certificates a context was to trust is one (the server relayed junk)."""


def fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate, as WebRTC writes it: ``AB:CD:...``."""
    return ":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest())


def encode_certificate(der: bytes) -> str:
    """A certificate as it travels in a frame: base64 of its DER."""
    return base64.b64encode(der).decode("ascii")


def decode_certificate(text: object) -> bytes | None:
    """A certificate from a frame (base64 DER), or None if it is absent or not base64."""
    if type(text) is not str or not text or len(text) > MAX_CERT:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


class PeerIdentity:
    """This client's key pair and self-signed certificate for the session."""

    __slots__ = ("certificate", "_key_and_certificate")

    def __init__(self, certificate: bytes, key_and_certificate: bytes) -> None:
        self.certificate = certificate                    # DER
        self._key_and_certificate = key_and_certificate   # PEM: the private key, then the certificate

    @classmethod
    def generate(cls, now: datetime.datetime | None = None) -> PeerIdentity:
        """A fresh EC P-256 key and a certificate for it, self-signed, valid for ``VALIDITY`` from ``now``."""
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.x509.oid import NameOID
        except ImportError:
            raise MissingLibrary("they need the cryptography package in TLS mode "
                                 "(pip install 'reactor-chat[tls]')") from None
        now = now or datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reactor-chat peer")])
        certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                       .public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + VALIDITY)
                       .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                       .sign(key, hashes.SHA256()))
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()) + certificate.public_bytes(serialization.Encoding.PEM)
        return cls(certificate.public_bytes(serialization.Encoding.DER), pem)

    def context(self, trusted: Iterable[bytes], *, server_side: bool) -> ssl.SSLContext:
        """A context for one peer connection: it presents this client's certificate and requires the
        peer's to be one of ``trusted`` (DER), exactly; no host name (a peer has none to check).

        Each of ``trusted`` is loaded on its own, and one that is no certificate is left out (logged): the
        others are trusted still. ``NoUsableCertificate`` if there were some and none is one; none at all:
        every certificate fails."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
        self._load_into(context)
        given = usable = 0
        for certificate in trusted:
            given += 1
            try:
                context.load_verify_locations(cadata=certificate)
            except (ssl.SSLError, ValueError) as exc:
                log.warning("a relayed certificate (%d bytes, SHA-256 %s) cannot be used: %s",
                            len(certificate), fingerprint(certificate), exc)
                continue
            usable += 1
        if given and not usable:
            raise NoUsableCertificate("none of the certificates relayed can be used")
        return context

    def _load_into(self, context: ssl.SSLContext) -> None:
        """``load_cert_chain`` reads files only: the key goes through a file only this user can read
        (``mkstemp`` makes it 0600), removed at once."""
        fd, path = tempfile.mkstemp(prefix="reactor-chat-peer-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(self._key_and_certificate)
            context.load_cert_chain(path)
        finally:
            os.unlink(path)
