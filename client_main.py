"""Runs the chat client: python3 client_main.py <server_host> <server_port> [--timestamps] [--tls [--ca FILE]]
[--record FILE [--record-texts]]."""
import argparse
import os
import sys
import time

from reactor.client.console import open_console
from reactor.client.host import ClientHost
from reactor.client.peer_certs import MissingLibrary, PeerIdentity
from reactor.client.words import SAY
from reactor.journal.client import ClientRecording
from reactor.loop import EventLoop
from reactor.tls import TLSConfigError, client_context


def port_number(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(text)
    return port


port_number.__name__ = "port (1-65535)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The chat client.")   # (prog: client_main.py, or reactor-chat-client)
    parser.add_argument("server_host", help="the server's name or address")
    parser.add_argument("server_port", type=port_number, help="the server's port")
    parser.add_argument("--timestamps", action="store_true",
                        help="show the time live messages arrive (stored messages always show when they were sent)")
    parser.add_argument("--tls", action="store_true",
                        help="speak TLS to the server, verifying its certificate and host name; private chats "
                             "are then encrypted end to end (they need the cryptography package)")
    parser.add_argument("--ca", metavar="FILE",
                        help="trust only the CA certificates in FILE (PEM) for the server (implies --tls; "
                             "default: the system's CAs)")
    parser.add_argument("--record", metavar="FILE",
                        help="write a journal of this session to FILE, to replay it (reactor-chat-replay FILE "
                             "--screen: a bug report); no password, token or certificate is written, and message "
                             "texts only with --record-texts")
    parser.add_argument("--record-texts", action="store_true",
                        help="with --record: write what was typed and shown as it was (default: made up)")
    args = parser.parse_args(argv)
    tls = identity = no_private_chats = None
    if args.tls or args.ca is not None:   # private chats too are encrypted, end to end (reactor.client.peer_certs)
        try:
            tls = client_context(args.ca)
        except TLSConfigError as exc:
            print(f"Error. {exc}", file=sys.stderr)
            return 2
        try:
            identity = PeerIdentity.generate()
        except MissingLibrary as exc:     # the chat works; only private chats need the library
            no_private_chats = str(exc)
            print(SAY("no_private_chats", {"reason": no_private_chats}), file=sys.stderr)
    loop = EventLoop()
    recording = ClientRecording(loop, args.record, texts=args.record_texts)   # (the client itself without --record)
    logic = recording.build(timestamps=args.timestamps, wall_offset=time.time() - loop.time(),
                            certificate=None if identity is None else identity.certificate,
                            scripted=not os.isatty(0),   # a script waits out the rate limit; a person decides
                            no_private_chats=no_private_chats)
    console = open_console(complete=logic.completions, limit=logic.text_limit)
    recording.watch(console)
    host = ClientHost(loop, logic, console, tls, identity)
    try:
        host.start(args.server_host, args.server_port)
        loop.run()
    finally:
        console.close()  # the terminal is restored on every way out, an exception included
        recording.close()
        loop.close()
    return 1 if host.exit_status is None else host.exit_status


if __name__ == "__main__":
    sys.exit(main())
