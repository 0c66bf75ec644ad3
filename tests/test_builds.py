"""Which build runs (reactor/builds.py): the compiled modules only when their manifest matches every source, a stale
or missing fast build refused with the remedy, and REACTOR_BUILD choosing."""
import importlib
import importlib.machinery
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import reactor
from reactor import builds, fastjson

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)


@pytest.mark.compiled
def test_the_build_asked_for_is_the_one_that_runs():
    """make test runs the suite with REACTOR_BUILD=pure, make test-compiled with fast: each hot module is then
    the source, or the compiled extension."""
    wanted = os.environ["REACTOR_BUILD"]
    assert reactor.BUILD == wanted
    files = {name: importlib.import_module(name).__file__ for name in builds.HOT_MODULES}
    assert fastjson.ENABLED == (wanted == "fast")   # (orjson is in the dev extras: the fast build uses it)
    if wanted == "fast":
        assert all(path.endswith(EXTENSIONS) for path in files.values()), files
        assert all(builds.build_dir() in path for path in files.values()), files
        frame = {"type": "message", "from": "hans", "text": "hello"}
        assert fastjson.encode(frame) == b'{"type":"message","from":"hans","text":"hello"}\n'   # orjson's bytes
    else:
        assert all(path == builds.source_path(name) for name, path in files.items()), files


def test_a_manifest_is_stale_for_each_source_changed_missing_or_not_compiled(tmp_path):
    package = copy_package(tmp_path)
    hashes = {m: builds.source_hash(builds.source_path(m, str(package))) for m in builds.HOT_MODULES}
    assert builds.stale_sources({"sources": hashes}, str(package)) == []
    (package / "framing.py").write_text((package / "framing.py").read_text() + "\n# changed\n")
    assert builds.stale_sources({"sources": hashes}, str(package)) == ["reactor.framing"]
    del hashes["reactor.loop"]
    assert builds.stale_sources({"sources": hashes}, str(package)) == ["reactor.framing", "reactor.loop"]
    assert builds.stale_sources({}, str(package)) == list(builds.HOT_MODULES)   # no hashes at all: nothing is current


def copy_package(tmp_path):
    """The package's sources alone (no fast build) under ``tmp_path``/reactor."""
    package = tmp_path / "reactor"
    shutil.copytree(ROOT / "reactor", package, ignore=shutil.ignore_patterns("_fast", "__pycache__"))
    return package


def fake_build(package, *, changed=None):
    """A fast build's manifest in the copy ``package`` naming extension files that are not there, its hashes
    those of the sources (but ``changed``'s)."""
    folder = pathlib.Path(builds.build_dir(str(package)))
    folder.mkdir(parents=True)
    hashes = {m: builds.source_hash(builds.source_path(m, str(package))) for m in builds.HOT_MODULES}
    if changed:
        hashes[changed] = "0" * 64
    files = {m: m.replace(".", "/") + EXTENSIONS[0] for m in builds.HOT_MODULES}
    (folder / builds.MANIFEST).write_text(json.dumps({"sources": hashes, "files": files}))


def run_in(folder, code, build=None):
    env = {k: v for k, v in os.environ.items() if k != "REACTOR_BUILD" and not k.startswith("COVERAGE")}
    if build is not None:
        env["REACTOR_BUILD"] = build
    return subprocess.run([sys.executable, "-S", "-c", code], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.e2e
def test_without_a_fast_build_the_sources_run_and_asking_for_it_is_refused_with_the_remedy(tmp_path):
    copy_package(tmp_path)
    out = run_in(tmp_path, "import reactor, reactor.server.host; print(reactor.BUILD, reactor.server.host.__file__)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["pure", str(tmp_path / "reactor" / "server" / "host.py")]
    out = run_in(tmp_path, "import reactor.framing", build="fast")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f"reactor.builds.BuildError: REACTOR_BUILD=fast but there is no fast build for this interpreter "
        f"({builds.build_dir(str(tmp_path / 'reactor'))}): run make fast")


@pytest.mark.e2e
def test_a_fast_build_older_than_a_source_is_refused_at_a_hot_module_and_pure_runs_the_sources(tmp_path):
    """The package itself imports (the builder must run to make the build current), a hot module does not."""
    package = copy_package(tmp_path)
    fake_build(package, changed="reactor.server.rules")
    out = run_in(tmp_path, "import reactor, reactor.fastbuild; print(reactor.BUILD)")
    assert (out.returncode, out.stdout) == (0, "refused\n"), out.stderr
    out = run_in(tmp_path, "import reactor.server.rules")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f"reactor.builds.BuildError: the fast build in {builds.build_dir(str(package))} is older than the source of "
        f"reactor.server.rules: run make fast to rebuild it (make clean-fast removes it), or set REACTOR_BUILD=pure "
        f"to run the pure-Python modules")
    out = run_in(tmp_path, "import reactor, reactor.server.rules as r; print(reactor.BUILD, r.__file__)", build="pure")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["pure", str(package / "server" / "rules.py")]


@pytest.mark.e2e
def test_a_current_manifest_whose_files_are_gone_is_refused_too(tmp_path):
    package = copy_package(tmp_path)
    fake_build(package)
    out = run_in(tmp_path, "import reactor.loop")
    assert out.returncode == 1
    first = ", ".join(sorted(builds.HOT_MODULES)[:3])
    assert (f"the fast build in {builds.build_dir(str(package))} lacks the compiled {first} and "
            f"{len(builds.HOT_MODULES) - 3} more: run make fast") in out.stderr


@pytest.mark.e2e
def test_an_unknown_choice_is_refused(tmp_path):
    copy_package(tmp_path)
    out = run_in(tmp_path, "import reactor", build="turbo")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "reactor.builds.BuildError: REACTOR_BUILD='turbo': it is one of auto, pure, fast")
