"""The design rules that can be checked by reading or importing the code: one thread, the standard library
alone at run time, a package that installs what the top level holds."""
import ast
import json
import os
import pathlib
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FORBIDDEN = {"threading", "_thread", "asyncio", "concurrent", "multiprocessing"}   # threads, coroutines, pools
MAINS = ("server_main", "client_main")
# What the top level may hold besides hidden files (.ci/, .gitignore, ...).
TOP_LEVEL = {"Makefile", "reactor", *(f"{m}.py" for m in MAINS), "tests", "credentials.txt", "README.md",
             "CONTRIBUTING.md", "docs", "pyproject.toml", "LICENSE"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def product_files():
    return sorted(ROOT.glob("reactor/**/*.py")) + [ROOT / f"{m}.py" for m in MAINS]


def imported_modules(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


def test_the_product_runs_on_one_thread():
    offenders = []
    for path in product_files():
        offenders += [f"{path.relative_to(ROOT)}: {m}" for m in imported_modules(path) if m in FORBIDDEN]
    assert offenders == []


def test_the_check_itself_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom concurrent.futures import ThreadPoolExecutor\n")
    assert "concurrent" in set(imported_modules(bad))


def private_imports(path):
    """The ``_``-prefixed names ``path`` imports from other modules, as ``module.name`` (a private module
    counts too: ``from _json import ...``, ``import reactor._x``); ``__future__`` and dunders are no one's."""
    def private(name):
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if any(private(part) for part in (node.module or "").split(".")):
                yield module
            yield from (f"{module}.{alias.name}" for alias in node.names if private(alias.name))
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if any(private(p) for p in alias.name.split(".")))


def test_cluster_mode_imports_no_private_name_from_another_module():
    """Cluster mode reaches the server's rules and hosts through their public seam (named hooks, the parts'
    public methods), never through a name another module keeps to itself."""
    cluster = sorted(ROOT.glob("reactor/cluster/**/*.py"))
    assert len(cluster) >= 5
    offenders = [f"{path.relative_to(ROOT)}: {name}" for path in cluster for name in private_imports(path)]
    assert offenders == []


def test_the_check_itself_sees_a_private_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from __future__ import annotations\nfrom ..server.rules import ChatServer, _Conn\n"
                   "from ..server import _internal\nimport reactor.server._hidden\nfrom _json import make_encoder\n")
    assert set(private_imports(bad)) == {"..server.rules._Conn", "..server._internal", "reactor.server._hidden",
                                         "_json"}


# The modules of cluster mode alone, and the packages each may import besides the standard library (its extra's).
CLUSTER_ONLY = {"reactor.cluster.engine": {"hiredis"}, "reactor.cluster.scripts": {"hiredis"},
                "reactor.cluster.keeping": {"hiredis"}, "reactor.cluster.host": {"hiredis"},
                "reactor.cluster.operator": {"hiredis"}}
# The modules of --metrics alone (the operator's HTTP endpoint), and its extra's packages.
METRICS_ONLY = {"reactor.ops.http": {"h11"}}
# The simulator's modules that need the dev extra's Hypothesis (and what it loads), or cluster mode's.
HYPOTHESIS = {"hypothesis", "_hypothesis_globals", "sortedcontainers", "typing_extensions",
              # (the standard library's sysconfig data, named for the platform, which Hypothesis reads)
              f"_sysconfigdata_{sys.abiflags}_{sys.platform}_{getattr(sys.implementation, '_multiarch', '')}"}
SIM_ONLY = {"reactor.sim.machine": HYPOTHESIS, "reactor.sim.runner": HYPOTHESIS, "reactor.sim.journal": HYPOTHESIS,
            "reactor.sim.__main__": HYPOTHESIS, "reactor.sim.cluster": {"hiredis"}}
EXTRAS_ONLY = CLUSTER_ONLY | METRICS_ONLY | SIM_ONLY

# Imports every module of the package but the cluster-only and metrics-only ones (argv[1], JSON), and both
# mains (the rest of argv), then names each module they loaded that is neither the standard library's nor the
# project's own (not counting what the interpreter loaded at start-up: site's .pth hooks, with site-packages; the
# fast build's shared library, from its folder, is the project's own), the build it ran on, and the hot modules' files.
LOADED_FROM_ELSEWHERE = """
import sys
at_start = set(sys.modules)
import importlib, json, pkgutil
import reactor
skip, mains = set(json.loads(sys.argv[1])), sys.argv[2:]
names = [m.name for m in pkgutil.walk_packages(reactor.__path__, "reactor.") if m.name not in skip]
for name in names + mains:
    importlib.import_module(name)
own = {"reactor", *mains}
files = {name: getattr(sys.modules[name], "__file__", None) for name in reactor.builds.HOT_MODULES}
print(json.dumps({"imported": names + mains, "loaded": sorted(sys.modules), "build": reactor.BUILD, "files": files,
                  "foreign": sorted(m for m in set(sys.modules) - at_start
                                    if m.split(".")[0] not in sys.stdlib_module_names | own | {"__main__"}
                                    and not getattr(sys.modules[m], "__file__", "").startswith(
                                        reactor.builds.build_dir()))}))
"""


def module_name(path):
    """``reactor/server/rules.py`` -> ``reactor.server.rules``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def load_report(*python_flags, skip=(), mains=()):
    out = subprocess.run([sys.executable, *python_flags, "-c", LOADED_FROM_ELSEWHERE, json.dumps(sorted(skip)),
                          *mains], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr   # under -S a module outside the standard library is not even found
    return json.loads(out.stdout)


@pytest.mark.e2e
@pytest.mark.compiled
def test_the_product_imports_only_the_standard_library():
    """Under -S (no site-packages, no .pth files): every module but cluster mode's and --metrics', and both mains;
    on the build the suite runs on (make test-compiled: the fast build's compiled modules, which need no more)."""
    report = load_report("-S", skip=EXTRAS_ONLY, mains=MAINS)
    assert report["build"] == os.environ["REACTOR_BUILD"]
    compiled = [name for name, path in report["files"].items() if not path.endswith(".py")]
    assert compiled == (list(report["files"]) if report["build"] == "fast" else [])
    default = {module_name(p) for p in ROOT.glob("reactor/**/*.py")} - set(EXTRAS_ONLY) - {"reactor"}
    assert default <= set(report["imported"])
    assert report["foreign"] == []
    assert not set(CLUSTER_ONLY) & set(report["loaded"])   # no default module pulls a cluster-only one in
    assert not set(METRICS_ONLY) & set(report["loaded"])   # ... nor a metrics-only one


@pytest.mark.e2e
@pytest.mark.compiled
def test_cluster_mode_imports_only_the_standard_library_and_its_extra():
    """With site-packages (the dev extras installed): all of the package, cluster mode's and --metrics' modules
    included; they import nothing but their extras' packages (and, on the fast build, the fast extra's orjson)."""
    assert all((ROOT / f"{name.replace('.', '/')}.py").exists() for name in EXTRAS_ONLY)
    report = load_report(mains=MAINS)
    assert report["build"] == os.environ["REACTOR_BUILD"]
    assert set(EXTRAS_ONLY) <= set(report["imported"])
    allowed = set().union(*EXTRAS_ONLY.values(), {"orjson"} if report["build"] == "fast" else set())
    assert {m.split(".")[0] for m in report["foreign"]} <= allowed, report["foreign"]


def test_the_top_level_holds_only_what_the_design_names():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    top = {p.split("/")[0] for p in tracked.split() if not p.startswith(".")}
    assert top and top <= TOP_LEVEL, top - TOP_LEVEL


def test_the_package_installs_the_library_and_both_mains():
    setuptools = PYPROJECT["tool"]["setuptools"]
    packages = {str(p.parent.relative_to(ROOT)).replace("/", ".") for p in ROOT.glob("reactor/**/__init__.py")}
    assert set(setuptools["packages"]) == packages
    assert set(setuptools["py-modules"]) == set(MAINS)
    assert "PROTOCOL.md" in setuptools["package-data"]["reactor"]
    assert PYPROJECT["project"]["dependencies"] == []   # the standard library alone at run time


def test_the_console_commands_call_what_the_mains_call():
    """``reactor-chat-server``/``-client`` run ``sys.exit(main())`` on the very ``main`` that
    ``python3 server_main.py``/``client_main.py`` run it on; ``reactor-chat-admin`` the one that
    ``python3 server_main.py admin`` hands its arguments to, ``reactor-chat-replay`` the one that
    ``python3 server_main.py replay`` does."""
    scripts = PYPROJECT["project"]["scripts"]
    assert scripts == {"reactor-chat-server": "server_main:main", "reactor-chat-client": "client_main:main",
                       "reactor-chat-admin": "reactor.ops.admin_cli:main",
                       "reactor-chat-replay": "reactor.journal.cli:main"}
    assert "return admin_cli.main(argv[1:])" in (ROOT / "server_main.py").read_text()
    assert "from reactor.journal.cli import main as replay" in (ROOT / "server_main.py").read_text()
    assert "return replay(argv[1:])" in (ROOT / "server_main.py").read_text()
    for module in MAINS:
        source = (ROOT / f"{module}.py").read_text()
        assert source.rstrip().endswith('if __name__ == "__main__":\n    sys.exit(main())'), module


def test_the_installed_commands_load_the_mains_main():
    """The installed package (make test installs it editable) has entry points that load those functions."""
    from importlib import metadata

    import client_main
    import server_main
    from reactor.journal import cli as replay_cli
    from reactor.ops import admin_cli
    commands = {ep.name: ep.load() for ep in metadata.entry_points(group="console_scripts")
                if ep.name.startswith("reactor-chat-")}
    assert commands == {"reactor-chat-server": server_main.main, "reactor-chat-client": client_main.main,
                        "reactor-chat-admin": admin_cli.main, "reactor-chat-replay": replay_cli.main}


def logger_names(path):
    """The first argument of each ``logging.getLogger(...)`` call in ``path``, as source text."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "getLogger"
                and node.args):
            yield ast.unparse(node.args[0])


def test_the_package_names_its_loggers_by_module():
    """``logging.getLogger(__name__)``: a record says which module wrote it, and ``reactor`` configures them all."""
    offenders = [f"{path.relative_to(ROOT)}: getLogger({name})" for path in sorted(ROOT.glob("reactor/**/*.py"))
                 for name in logger_names(path) if name != "__name__"]
    assert offenders == []


def test_tls_mode_alone_needs_a_library_pinned_in_its_extra_and_in_dev():
    """``cryptography`` makes the private-chat certificates of TLS mode: it is the ``tls`` extra, pinned, and the
    dev extras hold the same pin so the tests run it; the default installs nothing."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert [pin.split("==")[0] for pin in extras["tls"]] == ["cryptography"]
    assert set(extras["tls"]) <= set(extras["dev"])


def test_cluster_mode_alone_needs_hiredis_pinned_in_its_extra_and_in_dev():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert [pin.split("==")[0] for pin in extras["cluster"]] == sorted(set().union(*CLUSTER_ONLY.values()))
    assert set(extras["cluster"]) <= set(extras["dev"])


def test_metrics_alone_need_h11_pinned_in_its_extra_and_in_dev():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert [pin.split("==")[0] for pin in extras["metrics"]] == sorted(set().union(*METRICS_ONLY.values()))
    assert all("==" in pin for pin in extras["metrics"])
    assert set(extras["metrics"]) <= set(extras["dev"])


@pytest.mark.e2e
def test_tls_mode_without_its_library_says_what_to_install_and_goes_on_without_private_chats(tmp_path):
    """-S: no site-packages, so no cryptography; the client says private chats are unavailable, with the remedy,
    and goes on to connect (here to a port where nobody listens: tests/test_tls_start.py has the chat)."""
    out = subprocess.run([sys.executable, "-S", str(ROOT / "client_main.py"), "127.0.0.1", "1", "--tls"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 1 and out.stdout.startswith("Error. Cannot connect to server at 127.0.0.1:1")
    assert out.stderr.strip() == ("Private chats are unavailable: they need the cryptography package in TLS mode "
                                  "(pip install 'reactor-chat[tls]')")


# -- the tests themselves ----------------------------------------------------------------------------------------

TEST_MODULES = sorted(ROOT.glob("tests/test_*.py"))
STDLIB_PRIVATE = {"os._exit"}   # a private-looking name that is the standard library's public API


def imported_test_modules(path):
    """The test modules ``path`` imports (``tests.test_x``): helpers belong in tests/support.py or conftest.py."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                 else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
        yield from (name for name in names if name.split(".")[-1].startswith("test_"))


def private_reads(path):
    """``object._name`` in ``path`` where the object is not the code's own (``self``, ``cls``)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            owner = node.value.id if isinstance(node.value, ast.Name) else "..."
            if f"{owner}.{node.attr}" not in STDLIB_PRIVATE:
                yield f"{path.name}:{node.lineno}: {owner}.{node.attr}"


def test_no_test_module_imports_another():
    assert len(TEST_MODULES) > 30
    assert [f"{p.name}: {m}" for p in TEST_MODULES for m in imported_test_modules(p)] == []


def test_no_test_reads_a_private_attribute():
    assert [line for path in TEST_MODULES for line in private_reads(path)] == []


def test_the_checks_of_the_tests_see_what_they_look_for(tmp_path):
    bad = tmp_path / "test_bad.py"
    bad.write_text("from tests.test_chat_server import World\nimport tests.test_store\n"
                   "def test_x(server):\n    assert server._online == {}\n    self._fine = 1\n    os._exit(0)\n")
    assert list(imported_test_modules(bad)) == ["tests.test_chat_server", "tests.test_store"]
    assert list(private_reads(bad)) == ["test_bad.py:4: server._online"]
