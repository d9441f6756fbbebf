"""The XEP pages and the README cite code and tests by name: each citation must exist.

A page that names a file, a unit test or an integration test that was moved or
renamed misleads the reader who follows it; these checks make such a page fail
the suite instead. They need no XMPP server."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "xeps").glob("*.md")) + [ROOT / "README.md"]
# The one citation that is a pattern, not a name (xeps/README.md explains the form).
PLACEHOLDERS = {"module::tests::name"}


def rust_module_file(path):
    """`xmpp::router` -> src/xmpp/router.rs (or src/xmpp/router/mod.rs)."""
    base = ROOT / "src" / Path(*path.split("::"))
    for candidate in (base.with_suffix(".rs"), base / "mod.rs"):
        if candidate.exists():
            return candidate
    return None


def broken_citations(page):
    text = page.read_text()
    broken = []
    for m in re.finditer(r"`((?:src|tests|examples)/[A-Za-z0-9_./-]+)`", text):
        if not (ROOT / m.group(1)).exists():
            broken.append(f"{m.group(1)}: no such path")
    for m in re.finditer(r"`([a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*)::tests::([a-z0-9_]+)`", text):
        if m.group(0).strip("`") in PLACEHOLDERS:
            continue
        module = rust_module_file(m.group(1))
        if module is None:
            broken.append(f"{m.group(0)}: no module {m.group(1)}")
        elif not re.search(rf"\bfn {m.group(2)}\b", module.read_text()):
            broken.append(f"{m.group(0)}: no such test in {module.relative_to(ROOT)}")
    for m in re.finditer(r"`(?:tests/)?(test_[a-z0-9_]+\.py)::(test_[a-z0-9_]+)", text):
        test_file = ROOT / "tests" / m.group(1)
        if not test_file.exists():
            broken.append(f"{m.group(0)}`: no file tests/{m.group(1)}")
        elif not re.search(rf"\bdef {m.group(2)}\b", test_file.read_text()):
            broken.append(f"{m.group(0)}`: no such test in tests/{m.group(1)}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_citation_exists(page):
    broken = broken_citations(page)
    assert not broken, f"{page.relative_to(ROOT)} cites what is not there:\n" + "\n".join(broken)
