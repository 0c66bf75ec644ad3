"""Runs the chat server: python3 server_main.py <server_port> <block_duration> <timeout> [options].

``python3 server_main.py hash-password [--user NAME]`` prints a hashed password for the accounts file instead;
``python3 server_main.py admin PATH COMMAND`` speaks to a running server's admin socket (``reactor-chat-admin``).
Installed, the command is ``reactor-chat-server``: its usage and hints name the command as it was run.
``python3 server_main.py replay FILE`` replays a journal written with ``--record`` (``reactor-chat-replay``).
"""
from __future__ import annotations

import argparse
import datetime
import errno
import logging
import math
import os
import resource
import signal
import ssl
import sys
import time
from typing import Any

from reactor.handshakes import HANDSHAKE_RATE
from reactor.journal.server import RulesBuilder
from reactor.journal.server import add_arguments as add_record_arguments
from reactor.loop import EventLoop
from reactor.ops import admin_cli, options
from reactor.ops.logs import FORMATS, configure_logging
from reactor.server.accounts_file import AccountsFile
from reactor.server.credentials import CredentialsError, CredentialsMissing, load_credentials, plain_accounts
from reactor.server.host import (
    FAILURE_LOG_INTERVAL,
    MAX_STRANGERS,
    MAX_STRANGERS_PER_ADDRESS,
    ServerHost,
    StopOnStoreFailure,
)
from reactor.server.limits import BURST, RATE, SENDER_QUOTA
from reactor.server.operator import ServerOperator
from reactor.server.passwords import hash_password_command
from reactor.server.reload import AccountsReload
from reactor.server.rules import ChatServer
from reactor.server.store import HISTORY_CAP, Store, StoreError
from reactor.server.verifier import default_helpers
from reactor.tls import TLSConfigError, certificate_expiry, server_context

log = logging.getLogger(__name__)


def port_number(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(text)
    return port


MAX_SECONDS = 365 * 24 * 3600   # block_duration and timeout: at most a year


def seconds(text: str) -> float:
    """More than 0 and at most a year; NaN and infinity are refused."""
    try:
        value = float(text)
        if 0 < value <= MAX_SECONDS:
            return value
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a number of seconds more than 0 and at most {MAX_SECONDS} (a year)")


def engine_url(url: str) -> tuple[str, int]:
    """``redis://HOST:PORT`` (or ``valkey://``) as (host, port)."""
    scheme, sep, rest = url.partition("://")
    host, colon, port = rest.rstrip("/").rpartition(":")
    if sep and scheme in ("redis", "valkey") and colon and host and port.isdigit() and 0 < int(port) < 65536:
        return host.strip("[]"), int(port)
    raise argparse.ArgumentTypeError(f"{url!r} is not redis://HOST:PORT")


def node_id(text: str) -> str:
    """1 to 64 letters, digits, dots, dashes or underscores."""
    if 0 < len(text) <= 64 and text.isascii() and all(ch.isalnum() or ch in "._-" for ch in text):
        return text
    raise argparse.ArgumentTypeError(f"{text[:80]!r} is not a node id (1 to 64 of A-Z a-z 0-9 . _ -)")


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def byte_count(text: str) -> int:
    """``65536``, ``64K``, ``100M``, ``2G`` (powers of 1024) as a number of bytes > 0."""
    unit = text[-1:].upper() if text[-1:].isalpha() else ""
    number = text[:len(text) - len(unit)]
    if unit not in _UNITS or not number.isdigit() or int(number) <= 0:
        raise ValueError(text)
    return int(number) * _UNITS[unit]


def byte_cap(text: str) -> int | None:
    """A ``byte_count``, or ``0`` for no cap (None)."""
    return None if text == "0" else byte_count(text)


def rate(text: str) -> float | None:
    """Tokens a second, finite and >= 0; ``0`` for no limit (None)."""
    value = float(text)
    if not 0 <= value < math.inf:
        raise ValueError(text)
    return value or None


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def days(text: str) -> float:
    """A number of days, 0 or more and at most 100 years."""
    value = float(text)
    if not 0 <= value <= 36500:
        raise ValueError(text)
    return value


def whole_number(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


days.__name__ = "number of days (0 to 36500; 0: no history)"
whole_number.__name__ = "whole number (>= 0)"
port_number.__name__ = "port (0-65535)"
positive_int.__name__ = "whole number (> 0)"
byte_count.__name__ = "size in bytes (> 0; K, M, G allowed)"
byte_cap.__name__ = "size in bytes (0: no cap; K, M, G allowed)"
rate.__name__ = "rate (a number >= 0; 0: no limit)"

STATE_MAX_BYTES = 1 << 30   # default cap on the state file
HISTORY_DAYS = 7.0          # days history is kept by default
CERTIFICATE_WARNING = datetime.timedelta(days=14)   # a TLS certificate that expires sooner is warned of at start


def command_name() -> str:
    """The command as it was run, for usage and hints: ``server_main.py``, or the installed
    ``reactor-chat-server``."""
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "server_main.py"


def invocation() -> str:
    """How to run the command again: ``python3 server_main.py``, or ``reactor-chat-server``."""
    name = command_name()
    return f"python3 {name}" if name.endswith(".py") else name
JOIN_WAIT = 2.0             # seconds a cluster node waits for the engine to let it join before it listens anyway


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=command_name(), description="The chat server.")
    parser.add_argument("server_port", type=port_number, help="TCP port to listen on (0: the OS picks)")
    parser.add_argument("block_duration", type=seconds,
                        help="seconds an account stays locked after 3 bad passwords (at most a year)")
    parser.add_argument("timeout", type=seconds,
                        help="seconds of inactivity before a user is logged out (at most a year)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for a LAN)")
    parser.add_argument("--credentials", default="credentials.txt", help="accounts file (default credentials.txt)")
    parser.add_argument("--state", default="chat-state.db",
                        help="file that keeps blocks and offline messages across restarts "
                             "(default chat-state.db; :memory: forgets them at exit)")
    parser.add_argument("--synchronous", default="FULL", type=str.upper, choices=["FULL", "NORMAL"],
                        help="FULL (default): a confirmed message survives a power cut; "
                             "NORMAL: faster, survives a crash of the server but maybe not of the machine")
    parser.add_argument("--state-max-bytes", type=byte_cap, default=STATE_MAX_BYTES, metavar="N",
                        help="cap on the state file (bytes; K, M, G allowed): when it is full a message "
                             "that would be kept is refused and its sender told (default 1G; 0: no cap)")
    parser.add_argument("--history-days", type=days, default=HISTORY_DAYS, metavar="N",
                        help="days the server keeps direct messages and broadcasts for each user's history "
                             f"(default {HISTORY_DAYS:g}; 0: keeps none, and drops what the state file kept)")
    parser.add_argument("--history-cap", type=positive_int, default=HISTORY_CAP, metavar="N",
                        help="messages of their own each user's history keeps, at most; the oldest go first "
                             f"(default {HISTORY_CAP})")
    parser.add_argument("--rate", type=rate, default=RATE, metavar="R",
                        help=f"messages a second each user may send, sustained (default {RATE:g}; "
                             "0: no limit); a message counts once per started 4 KiB on the wire")
    parser.add_argument("--burst", type=positive_int, default=BURST, metavar="N",
                        help=f"messages a user may send at once before --rate applies (default {BURST})")
    parser.add_argument("--sender-quota", type=byte_cap, default=SENDER_QUOTA, metavar="N",
                        help="bytes each user may have kept for offline recipients, all together "
                             "(K, M, G allowed; default 1M; 0: no quota)")
    parser.add_argument("--max-strangers", type=positive_int, default=None, metavar="N",
                        help="connections not logged in, in all; more are refused with 'busy' (default "
                             f"{MAX_STRANGERS}, but at most a quarter of the open-files limit)")
    parser.add_argument("--max-strangers-per-address", type=positive_int, default=MAX_STRANGERS_PER_ADDRESS,
                        metavar="N", help="connections not logged in from one source address "
                                          f"(default {MAX_STRANGERS_PER_ADDRESS})")
    parser.add_argument("--failure-log-interval", type=seconds, default=FAILURE_LOG_INTERVAL, metavar="SECONDS",
                        help="failed logins and refused connections are logged as counts per address once per "
                             f"interval (default {FAILURE_LOG_INTERVAL:g})")
    parser.add_argument("--password-helpers", type=positive_int, default=None, metavar="N",
                        help="helper processes that check hashed passwords side by side, so many logins at once "
                             f"are not told to try again (default: one per core this server may run on, here "
                             f"{default_helpers()})")
    parser.add_argument("--no-password-change", action="store_true",
                        help="users may not change their own password (by default they may: the server rewrites "
                             "their line of the credentials file, which it must own and be able to write)")
    parser.add_argument("--tls-cert", metavar="FILE",
                        help="speak TLS only, with this certificate chain (PEM); needs --tls-key")
    parser.add_argument("--tls-key", metavar="FILE", help="the private key (PEM) of --tls-cert")
    parser.add_argument("--tls-handshake-rate", type=rate, default=HANDSHAKE_RATE, metavar="R",
                        help=f"TLS handshakes a second each source address may start, sustained (default "
                             f"{HANDSHAKE_RATE:g}; as many as --max-strangers-per-address at once; 0: no limit); "
                             "a connection past that is closed at once and counts against its address too")
    parser.add_argument("--cluster", type=engine_url, metavar="redis://HOST:PORT",
                        help="run as one node of a cluster whose state is in this Valkey or Redis (7.0 or newer); "
                             "needs the cluster extra (hiredis); --state is then unused")
    parser.add_argument("--node-id", type=node_id, metavar="ID",
                        help="this node's name in the cluster, unique among its nodes (needed with --cluster)")
    parser.add_argument("--reuse-port", action="store_true",
                        help="share the port with other servers on this machine (SO_REUSEPORT: the kernel spreads "
                             "connections among them; for the nodes of a cluster)")
    add_record_arguments(parser, byte_count)
    parser.add_argument("--log-level", default="INFO", type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    parser.add_argument("--log-format", default="text", choices=FORMATS,
                        help="text (default), or json: one object a line for a log collector")
    options.add_arguments(parser)
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if (args.cluster is None) != (args.node_id is None):
        parser.error("--cluster and --node-id go together")
    return args


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one; the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return sys.maxsize if soft == resource.RLIM_INFINITY else soft


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["hash-password"]:   # no port is spelled so: the server's own arguments are untouched
        return hash_password_command(argv[1:], prog=command_name())
    if argv[:1] == ["admin"]:
        return admin_cli.main(argv[1:])
    if argv[:1] == ["replay"]:
        from reactor.journal.cli import main as replay  # (pdb and the rest only for a replay)
        return replay(argv[1:])
    args = parse_args(argv)
    # A reload asked for before the loop takes SIGHUP, or after it let go of it, has nothing to act on.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    configure_logging(args.log_level, args.log_format)
    try:
        accounts = load_credentials(args.credentials)
    except CredentialsMissing as exc:
        print(f"Error. {exc} (name the accounts file with --credentials FILE: one '<username> <password>' line "
              "per account)", file=sys.stderr)
        return 2
    except CredentialsError as exc:
        print(f"Error. {exc}", file=sys.stderr)
        return 2
    tls = None
    if args.tls_cert is not None:
        try:
            tls = server_context(args.tls_cert, args.tls_key)
        except TLSConfigError as exc:
            print(f"Error. {exc}", file=sys.stderr)
            return 2
    if args.cluster is not None:
        return serve(args, accounts, None, tls)
    try:
        store = Store.open(args.state, args.synchronous, args.state_max_bytes,
                           history_cap=args.history_cap if args.history_days else 0)
    except StoreError as exc:
        print(f"Error. {exc}", file=sys.stderr)
        return 2
    try:
        status = serve(args, accounts, store, tls)
    finally:
        closed = close_store(store)
    return status if closed else 1


def warn_of_expiry(cert_file: str, now: datetime.datetime | None = None) -> None:
    """Log a warning if the certificate in ``cert_file`` has expired (clients refuse it) or expires within
    ``CERTIFICATE_WARNING``."""
    expires = certificate_expiry(cert_file)
    now = now or datetime.datetime.now(datetime.UTC)
    if expires is None:
        log.warning("cannot tell when the TLS certificate %s expires", cert_file)
    elif expires <= now:
        log.warning("the TLS certificate %s expired on %s UTC: clients refuse it", cert_file,
                    f"{expires:%Y-%m-%d %H:%M}")
    elif expires - now <= CERTIFICATE_WARNING:
        log.warning("the TLS certificate %s expires on %s UTC, in %d days: renew it", cert_file,
                    f"{expires:%Y-%m-%d %H:%M}", (expires - now).days)


def close_store(store: Store) -> bool:
    """Commit what the last loop iteration applied and release the file; False (said on stderr) if that failed."""
    try:
        store.close()
    except StoreError as exc:
        print(f"Error. {exc}", file=sys.stderr)
        return False
    return True


def serve(args: argparse.Namespace, accounts: dict[str, str], store: Store | None,
          tls: ssl.SSLContext | None) -> int:
    """Load the state, serve until stopped; the exit status. No store: a cluster node (its state is the engine's)."""
    try:
        blocks, offline = store.load() if store is not None else ([], [])
    except StoreError as exc:
        print(f"Error. {exc}", file=sys.stderr)
        return 2
    open_files = raise_open_files_limit()
    max_strangers = args.max_strangers
    if max_strangers is None:   # strangers never take the descriptors that logins and users need
        max_strangers = max(1, min(MAX_STRANGERS, open_files // 4))
    # The loop's turns are timed (chat_loop_turn_seconds) only for an operator who can read them.
    loop = EventLoop(turn_stats=args.metrics is not None or args.admin_socket is not None)
    guard = StopOnStoreFailure(store, loop) if store is not None else None
    logic_options: dict[str, Any] = dict(wall_offset=time.time() - loop.time(),  # stamps kept messages with when sent
                                         rate=args.rate, burst=args.burst, sender_quota=args.sender_quota,
                                         history=args.history_days > 0,
                                         password_changes=not args.no_password_change)
    host: ServerHost
    reload = AccountsReload(loop, args.credentials, lambda accounts: host.accounts_changed(accounts), accounts)
    # Where users' new passwords are written (on a cluster, also those changed on other nodes); a reload under
    # way is told, so that it does not undo one.
    accounts_file = AccountsFile(args.credentials, on_written=reload.changed)
    host_options: dict[str, Any] = dict(max_strangers=max_strangers, tls=tls,
                                        max_strangers_per_address=args.max_strangers_per_address,
                                        failure_log_interval=args.failure_log_interval,
                                        password_helpers=args.password_helpers, history_days=args.history_days,
                                        accounts_file=accounts_file, handshake_rate=args.tls_handshake_rate)
    rules = RulesBuilder.from_args(loop, args)   # the rules' classes themselves, or recording them (--record)
    operator: ServerOperator
    if guard is None:
        try:
            from reactor.cluster.host import ClusterHost  # (needs hiredis: the cluster extra)
            from reactor.cluster.rules import ClusterChatServer
        except ImportError as exc:
            print(f"Error. Cluster mode needs hiredis (pip install hiredis, or the cluster extra): {exc}",
                  file=sys.stderr)
            loop.close()
            return 2
        from reactor.cluster.operator import ClusterOperator
        node = rules.build(ClusterChatServer, accounts, args.block_duration, args.timeout, first_id=1,
                           **logic_options)
        host = cluster = ClusterHost(loop, node, args.cluster, args.node_id, history_cap=args.history_cap,
                                     **host_options)
        operator = ClusterOperator(loop, cluster, node, reload)
        # Joined before listening: a node id in use by a live node is refused before any client comes. (An
        # engine that does not answer is waited for while serving: logins wait.)
        cluster.start_cluster()
        deadline = loop.time() + JOIN_WAIT
        while cluster.starting and loop.time() < deadline:
            loop.run_once(timeout=0.05)
        if cluster.failure is not None:
            print(f"Error. {cluster.failure}", file=sys.stderr)
            loop.close()
            return 2
    else:
        logic = rules.build(ChatServer, accounts, args.block_duration, args.timeout, blocks=blocks, offline=offline,
                            **logic_options)
        host = ServerHost(loop, logic, guard, **host_options)
        operator = ServerOperator(loop, host, logic, reload, store=guard)
    try:   # the operator's endpoint and socket first: nothing is served if they cannot be
        ops = options.start(loop, args, operator.metrics, operator.ready, operator)
    except options.OpsError as exc:
        print(f"Error. {exc}", file=sys.stderr)
        loop.close()
        return 2
    try:
        host.serve(args.host, args.server_port, reuse_port=args.reuse_port)
    except OSError as exc:
        reason = "the port is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        print(f"Error. Cannot listen on {args.host}:{args.server_port}: {reason}", file=sys.stderr)
        ops.close()
        loop.close()
        return 1
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, host.shutdown)
    # SIGHUP reads the accounts file again, a slice per loop turn (a big file stalls nobody).
    loop.add_signal_handler(signal.SIGHUP, reload.request)
    bound_host, bound_port = host.address[:2]
    print(f"Server listening on {bound_host}:{bound_port}", flush=True)
    if ops.endpoint is not None:
        metrics_host, metrics_port = ops.endpoint.address[:2]
        print(f"Metrics on http://{metrics_host}:{metrics_port}/metrics", flush=True)
    if ops.admin is not None:
        log.info("admin socket %s", ops.admin.path)
    if tls is not None:
        log.info("TLS only, certificate %s", args.tls_cert)
        warn_of_expiry(args.tls_cert)
    plain = plain_accounts(accounts)
    if plain:
        log.warning("%d of %d accounts in %s have a plain password; hash them with: %s hash-password --user NAME",
                    plain, len(accounts), args.credentials, invocation())
    unwritable = None if args.no_password_change else accounts_file.writable()
    if unwritable is not None:
        log.warning("users cannot change their passwords: %s cannot be written: %s (the server changes only a file it "
                    "owns and may write; --no-password-change turns the command off)", args.credentials, unwritable.why)
    if not accounts:
        log.warning("%s holds no accounts: nobody can log in (one '<username> <password>' line per account; "
                    "SIGHUP reads it again)", args.credentials)
    log.info("serving %d accounts, block %.3gs, timeout %.3gs; at most %d strangers (%d per address)",
             len(accounts), args.block_duration, args.timeout, max_strangers, args.max_strangers_per_address)
    if args.history_days:
        log.info("history: direct messages and broadcasts kept %g days, at most %d of each user's own",
                 args.history_days, args.history_cap)
    else:
        log.info("history: none kept (--history-days 0); what was kept is being dropped")
    if guard is None:
        log.info("node %s of the cluster on %s:%d", args.node_id, *args.cluster)
    else:
        log.info("state %s: %d blocks, %d offline messages", args.state, len(blocks), len(offline))
    try:
        loop.run()
    finally:
        rules.close()
        ops.close()
        loop.close()
    if guard is not None and guard.failure is not None:
        print(f"Error. {guard.failure}", file=sys.stderr)
        return 1
    if guard is None and cluster.failure is not None:
        print(f"Error. {cluster.failure}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
