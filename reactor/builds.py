"""Which build of the hot modules runs: the compiled one (``make fast``) when it matches the sources, else pure Python.

The fast build is the same source compiled with mypyc (``reactor.fastbuild``):
its extension modules live in ``reactor/_fast/<interpreter>/`` beside a
manifest of the SHA-256 of each source they were compiled from. ``use()``,
called once by ``reactor/__init__.py``, puts a finder ahead of the import
system's that loads those modules in place of their sources, and only when
every source's hash matches: a compiled module older than its source is never
imported silently. The default, with no build, is the standard library alone.

``REACTOR_BUILD`` chooses: ``auto`` (unset) the fast build when one is there
(refused, with the remedy, when it is stale), ``pure`` the sources whatever is
built, ``fast`` the fast build or a refusal when there is none.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from types import ModuleType

# The modules compiled, in dependency order: the hot path of a relayed message (stream read -> framing -> rules
# -> host -> write) and what it calls on the way. Anything that subclasses one of their classes from outside
# this list needs ``@mypyc_attr(allow_interpreted_subclasses=True)`` on that class (reactor/compiled.py).
# Not here, as no relayed message runs them: reactor.handshakes (a TLS stranger's accept and handshake start, beside
# OpenSSL's 0.3 ms), reactor.server.pages (who is online, cut in C already), reactor.ops (the counts are slotted
# attributes the compiled rules and host add to; a scrape's rendering) (docs/performance.md, 2026-12-05).
HOT_MODULES = (
    "reactor.loop", "reactor.stream", "reactor.tls", "reactor.fastjson", "reactor.framing", "reactor.protocol",
    "reactor.text", "reactor.timer_effects",
    "reactor.server.effects", "reactor.server.commands", "reactor.server.blocks", "reactor.server.sessions",
    "reactor.server.limits", "reactor.server.mail", "reactor.server.presence", "reactor.server.privates",
    "reactor.server.door", "reactor.server.logins", "reactor.server.chat", "reactor.server.rules",
    "reactor.server.host",
)
ROOT = os.path.dirname(os.path.abspath(__file__))   # the package's folder
MANIFEST = "manifest.json"
ENV = "REACTOR_BUILD"
CHOICES = ("auto", "pure", "fast")


class BuildError(ImportError):
    """The fast build was asked for (or is there) and cannot be used; the message says what to do."""


def interpreter_tag() -> str:
    """What a compiled module is bound to: the interpreter's ABI (``cpython-311-x86_64-linux-gnu``)."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]   # (sysconfig's EXT_SUFFIX, without loading sysconfig's data)
    return suffix.strip(".").removesuffix(".so").removesuffix(".pyd") or sys.implementation.cache_tag


def build_dir(root: str = ROOT) -> str:
    """Where this interpreter's fast build lives: one folder per interpreter, so another never loads it."""
    return os.path.join(root, "_fast", interpreter_tag())


def source_path(module: str, root: str = ROOT) -> str:
    """``reactor.server.rules`` -> ``<root>/server/rules.py``."""
    return os.path.join(root, *module.split(".")[1:]) + ".py"


def source_hash(path: str) -> str:
    with open(path, "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()


def stale_sources(manifest: dict[str, object], root: str = ROOT) -> list[str]:
    """The modules whose source differs from what was compiled (or that were not compiled, or are gone)."""
    hashes = manifest.get("sources")
    if not isinstance(hashes, dict):
        return list(HOT_MODULES)
    stale = []
    for module in sorted(set(HOT_MODULES) | set(hashes)):
        path = source_path(module, root)
        if module not in hashes or not os.path.exists(path) or source_hash(path) != hashes[module]:
            stale.append(module)
    return stale


def read_manifest(folder: str) -> dict[str, object] | None:
    try:
        with open(os.path.join(folder, MANIFEST)) as file:
            manifest = json.load(file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


class CompiledFinder:
    """A ``sys.meta_path`` finder for the fast build's modules: each name in ``files`` from its extension file."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(name)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(name, file)
        return importlib.util.spec_from_file_location(name, file, loader=loader)


def choice() -> str:
    value = os.environ.get(ENV, "") or "auto"
    if value not in CHOICES:
        raise BuildError(f"{ENV}={value!r}: it is one of {', '.join(CHOICES)}")
    return value


class RefusingFinder:
    """A ``sys.meta_path`` finder that refuses the hot modules with ``reason``: the build asked for is unusable.

    Refused at the import of a hot module, not of the package, so what does not run on them (the builder,
    ``reactor.fastbuild``, which makes the build current again) still imports."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name in HOT_MODULES:
            raise BuildError(self.reason)
        return None


def use(root: str = ROOT) -> str:
    """Load the hot modules from the fast build when it is there and current; the build that runs, by name:
    ``pure``, ``fast``, or ``refused`` (a hot module's import raises a BuildError that says what to do)."""
    wanted = choice()
    if wanted == "pure":
        return "pure"
    folder = build_dir(root)
    manifest = read_manifest(folder)
    if manifest is None:
        if wanted == "auto":
            return "pure"
        reason = f"{ENV}=fast but there is no fast build for this interpreter ({folder}): run make fast"
    else:
        stale = stale_sources(manifest, root)
        files = manifest.get("files")
        what = "is older than the source of"
        if not stale and isinstance(files, dict):
            paths = {name: os.path.join(folder, str(file)) for name, file in files.items()}
            missing = sorted(name for name, path in paths.items() if not os.path.exists(path))
            if not missing and set(HOT_MODULES) <= set(paths):
                sys.meta_path.insert(0, CompiledFinder(paths))
                return "fast"
            stale, what = missing or sorted(set(HOT_MODULES) - set(paths)), "lacks the compiled"
        shown = ", ".join(stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
        reason = (f"the fast build in {folder} {what} {shown}: run make fast to rebuild it (make clean-fast "
                  f"removes it), or set {ENV}=pure to run the pure-Python modules")
    sys.meta_path.insert(0, RefusingFinder(reason))
    return "refused"
