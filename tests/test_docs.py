"""The docs hold together: every relative link reaches a file (and a heading, if it names one), every
``make`` target they show exists, and the README stays the user's short guide with the two commands."""
import re
import subprocess

from tests.support import ROOT

DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "reactor" / "PROTOCOL.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"```.*?```|`[^`\n]+`|^(?: {4}|\t)[^\n]*", re.DOTALL | re.MULTILINE)
MAKE = re.compile(r"\bmake ([A-Za-z0-9_./-]+)")
TARGET = re.compile(r"^([A-Za-z0-9_.$()/-]+):(?!=)", re.MULTILINE)


def anchor(heading):
    """GitHub's id for a heading: lower case, punctuation dropped (hyphens kept), spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path):
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {anchor(m[1]) for m in re.finditer(r"^#+ (.*)$", text, re.MULTILINE)}


def links(path):
    """(target file, anchor or None) for each relative link in ``path``."""
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):   # https://, mailto:
            continue
        file, _, fragment = target.partition("#")
        yield (path.parent / file).resolve() if file else path, fragment or None


def make_targets():
    makefile = (ROOT / "Makefile").read_text()
    return {t.replace("$(VENV)", ".venv").replace("$(CERTS)", ".certs") for t in TARGET.findall(makefile)}


def test_the_anchor_rule_matches_githubs():
    assert anchor("The rest of `make bench`, 2026-11-30") == "the-rest-of-make-bench-2026-11-30"
    assert anchor("Cluster mode's decisions") == "cluster-modes-decisions"


def test_every_relative_link_reaches_a_file_and_its_heading():
    broken = []
    for doc in DOCS:
        for file, fragment in links(doc):
            if not file.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {file}")
            elif fragment is not None and fragment not in anchors(file):
                broken.append(f"{doc.relative_to(ROOT)}: {file.relative_to(ROOT)}#{fragment}")
    assert broken == []


def test_the_check_itself_sees_a_broken_link(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("# Here\n[a](doc.md#here) [b](missing.md) [c](#nowhere) [d](https://example.org)\n")
    found = [(file.name, fragment) for file, fragment in links(doc)]
    assert found == [("doc.md", "here"), ("missing.md", None), ("doc.md", "nowhere")]
    assert anchors(doc) == {"here"}


def test_every_make_target_the_docs_show_exists():
    targets = make_targets()
    assert {"run-server", "run-client", "test", "test-fast", "lint", "bench", ".venv/.installed"} <= targets
    shown = {(doc.name, name) for doc in DOCS for code in CODE.findall(doc.read_text(encoding="utf-8"))
             for name in MAKE.findall(code)}
    assert shown and {(doc, name) for doc, name in shown if name not in targets} == set()


def test_the_readme_is_the_users_short_guide_with_the_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make run-server" in readme and "make test" in readme
    assert "foreground" in readme
    assert len(readme.splitlines()) <= 300


def test_every_doc_is_tracked():
    tracked = subprocess.run(["git", "ls-files", "README.md", "CONTRIBUTING.md", "docs"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    assert {str(doc.relative_to(ROOT)) for doc in DOCS if doc.parent != ROOT / "reactor"} <= set(tracked)
