"""Builds the fast build: the hot modules (``reactor.builds.HOT_MODULES``) compiled with mypyc, for this interpreter.

``python -m reactor.fastbuild`` (``make fast``) compiles them into
``reactor/_fast/<interpreter>/`` and writes the manifest that ``reactor.builds``
checks at import: the SHA-256 of each source compiled, and the extension file
of each module. It compiles only when a source changed since the last build (or
with ``--force``); ``--check`` says whether the build is current and exits 1 if
not. The build happens in a temporary folder and replaces the old one whole, the
manifest written last, so an interrupted build leaves no half-current one.
Needs mypy (which ships mypyc) and a C compiler: the ``fast`` extra, or ``dev``.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time

from . import builds

PROJECT = os.path.dirname(builds.ROOT)   # the folder that holds the package (and pyproject.toml's mypy settings)


def current(root: str = builds.ROOT) -> bool:
    manifest = builds.read_manifest(builds.build_dir(root))
    return bool(manifest) and not builds.stale_sources(manifest or {}, root)


def compile_modules(root: str, out: str, jobs: int) -> dict[str, str]:
    """Compile the hot modules under ``root`` into ``out``; each module's extension file, relative to ``out``."""
    from mypyc.build import mypycify  # (the fast build's tool: not needed to run either build)
    from setuptools import Distribution  # type: ignore[import-untyped, unused-ignore]

    sources = [os.path.relpath(builds.source_path(m, root), os.path.dirname(root)) for m in builds.HOT_MODULES]
    with tempfile.TemporaryDirectory(prefix="reactor-mypyc-") as temp, contextlib.chdir(os.path.dirname(root)):
        extensions = mypycify(sources, opt_level="3", debug_level="1", target_dir=os.path.join(temp, "c"))
        distribution = Distribution({"name": "reactor-fast", "ext_modules": extensions})
        command = distribution.get_command_obj("build_ext")
        command.build_lib = out
        command.build_temp = os.path.join(temp, "o")
        command.parallel = jobs
        command.ensure_finalized()
        command.run()
        files = {ext.name.removesuffix(".__init__"): command.get_ext_filename(ext.name) for ext in extensions}
    return files


def build(root: str = builds.ROOT, *, force: bool = False, jobs: int = 2, quiet: bool = False) -> bool:
    """Compile when a source changed (or ``force``); True if it compiled."""
    if not force and current(root):
        return False
    started = time.monotonic()
    hashes = {m: builds.source_hash(builds.source_path(m, root)) for m in builds.HOT_MODULES}
    final = builds.build_dir(root)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".building-", dir=os.path.dirname(final))
    try:
        files = compile_modules(root, staging, jobs)
        if any(builds.source_hash(builds.source_path(m, root)) != h for m, h in hashes.items()):
            raise RuntimeError("a source changed while it was compiled: run make fast again")
        import json
        with open(os.path.join(staging, builds.MANIFEST), "w") as manifest:
            json.dump({"interpreter": builds.interpreter_tag(), "python": sys.version.split()[0],
                       "sources": hashes, "files": files}, manifest, indent=1, sort_keys=True)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not quiet:
        print(f"fast build: {len(builds.HOT_MODULES)} modules compiled into {os.path.relpath(final)} "
              f"in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reactor.fastbuild", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only say whether the build is current (exit 1 if not)")
    parser.add_argument("--force", action="store_true", help="compile even when nothing changed")
    parser.add_argument("--clean", action="store_true", help="remove the fast build of every interpreter")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="C compilers run at once")
    args = parser.parse_args(argv)
    if args.clean:
        shutil.rmtree(os.path.join(builds.ROOT, "_fast"), ignore_errors=True)
        return 0
    if args.check:
        ok = current()
        print(f"fast build {'current' if ok else 'missing or stale'}: {builds.build_dir()}")
        return 0 if ok else 1
    if not build(force=args.force, jobs=args.jobs):
        print(f"fast build: current ({os.path.relpath(builds.build_dir())})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
