"""The design rules that can be checked by reading the code."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
FORBIDDEN = {"threading", "_thread", "asyncio", "concurrent", "multiprocessing"}


def product_files():
    return sorted(ROOT.glob("reactor/**/*.py")) + [ROOT / "server_main.py", ROOT / "client_main.py"]


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
        if path.exists():
            offenders += [f"{path.relative_to(ROOT)}: {m}" for m in imported_modules(path) if m in FORBIDDEN]
    assert offenders == []


def test_the_check_itself_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom concurrent.futures import ThreadPoolExecutor\n")
    assert "concurrent" in set(imported_modules(bad))


def test_top_level_layout():
    allowed = {"Makefile", "reactor", "server_main.py", "client_main.py", "tests", "credentials.txt",
               "README.md", "requirements-dev.txt", "pyproject.toml", "LICENSE"}
    import subprocess
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    top = {p.split("/")[0] for p in tracked if not p.startswith(".")}
    assert top <= allowed
