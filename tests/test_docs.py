"""The XEP pages (xeps/*.md) and README.md cite only things that exist.

Checked, in inline code spans (`...`) outside fenced code blocks:

- every `src/...`, `tests/...` or `examples/...` path exists (a glob such as
  `tests/*.py` must match something);
- every Rust unit test cited as `a::b::tests::name` is a `fn name` marked as
  a test inside the inline `mod tests` of `src/a/b.rs` or `src/a/b/mod.rs`;
- every Python test cited as `tests/test_x.py::test_y` or `test_x.py::test_y`
  is a `def test_y` in `tests/test_x.py`.

Needs no XMPP server, no Satchel binary and no network: it uses none of the
fixtures of conftest.py. Run it with
`python3 -m pytest -q -p no:cacheprovider tests/test_docs.py`.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "xeps").glob("*.md"))
README = ROOT / "README.md"

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
PATH = re.compile(r"(?<![\w./-])((?:src|tests|examples)/[^\s`'\"(),;]*)")
RUST_TEST = re.compile(
    r"^(?:crate::|satchel::)?((?:[a-z_][a-z0-9_]*::)*?[a-z_][a-z0-9_]*)"
    r"::tests::([a-z_][a-z0-9_]*)$")
PY_TEST = re.compile(
    r"^(?:tests/)?(test_\w+\.py)::(?:[A-Z]\w*::)?(test_\w+)$")


# -- reading the pages -----------------------------------------------------------
def code_spans(page):
    """(line number, content) of each inline code span of a Markdown file."""
    lines = page.read_text(encoding="utf-8").split("\n")
    fenced = False
    for i, line in enumerate(lines):
        if FENCE.match(line):
            fenced = not fenced
            lines[i] = ""
        elif fenced:
            lines[i] = ""
    text = "\n".join(lines)
    for m in CODE_SPAN.finditer(text):
        content = m.group(2)
        if "\n\n" in content:  # a span never crosses a paragraph
            continue
        line_no = text.count("\n", 0, m.start()) + 1
        yield line_no, " ".join(content.split())


def rel(page):
    return page.relative_to(ROOT).as_posix()


# -- the checks ------------------------------------------------------------------
def missing_path(path):
    path = path.rstrip(".:")
    if any(c in path for c in "*?["):
        return None if list(ROOT.glob(path)) else "no file matches this glob"
    return None if (ROOT / path).exists() else f"{path} does not exist"


def rust_test_module(module):
    """The text of the inline `mod tests` of a module path, or an error."""
    parts = module.split("::")
    candidates = [ROOT / "src" / Path(*parts).with_suffix(".rs"),
                  ROOT / "src" / Path(*parts) / "mod.rs"]
    source = next((p for p in candidates if p.is_file()), None)
    if source is None:
        return None, ("no module file: neither "
                      + " nor ".join(rel(p) for p in candidates) + " exists")
    lines = source.read_text(encoding="utf-8").split("\n")
    start = next((i for i, l in enumerate(lines)
                  if re.match(r"^(?:pub(?:\(\w+\))?\s+)?mod tests\s*\{", l)), None)
    if start is None:
        outline = next((l for l in lines
                        if re.match(r"^(?:pub(?:\(\w+\))?\s+)?mod tests\s*;", l)), None)
        if outline is not None:
            for p in (source.with_name("tests.rs"),
                      source.parent / source.stem / "tests.rs"):
                if p.is_file():
                    return p.read_text(encoding="utf-8").split("\n"), None
        return None, f"{rel(source)} has no `mod tests`"
    # rustfmt: the module ends at the first `}` back at column 0
    end = next((i for i in range(start + 1, len(lines))
                if re.match(r"^\}\s*$", lines[i])), len(lines))
    return lines[start + 1:end], rel(source)


def missing_rust_test(module, name):
    body, where = rust_test_module(module)
    if body is None:
        return where
    fn = re.compile(r"^\s*(?:pub(?:\(\w+\))?\s+)?(?:async\s+)?fn\s+"
                    + re.escape(name) + r"\s*[<(]")
    for i, line in enumerate(body):
        if fn.match(line):
            # the attributes above it, up to the end of the previous item
            above = []
            for prev in reversed(body[max(0, i - 10):i]):
                if not prev.strip() or prev.rstrip().endswith(("}", ";")):
                    break
                above.append(prev)
            if re.search(r"#\[(?:[\w:]+::)?test\b", "\n".join(above)):
                return None
            return f"`fn {name}` in the tests of {where} is not marked #[test]"
    return f"no `fn {name}` in `mod tests` of {where}"


def missing_python_test(file, name):
    path = ROOT / "tests" / file
    if not path.is_file():
        return f"tests/{file} does not exist"
    text = path.read_text(encoding="utf-8")
    if re.search(r"^\s*(?:async\s+)?def\s+" + re.escape(name) + r"\s*\(", text, re.M):
        return None
    return f"no `def {name}` in tests/{file}"


def problems(page, label=None):
    found = []
    for line, span in code_spans(page):
        where = f"{label or rel(page)}:{line}: `{span}`"
        for m in PATH.finditer(span):
            path = m.group(1).split("::")[0]
            why = missing_path(path)
            if why:
                found.append(f"{where}: path {why}")
        m = RUST_TEST.match(span)
        if m:
            why = missing_rust_test(*m.groups())
            if why:
                found.append(f"{where}: Rust test: {why}")
        m = PY_TEST.match(span)
        if m:
            why = missing_python_test(*m.groups())
            if why:
                found.append(f"{where}: Python test: {why}")
    return found


# -- the tests -------------------------------------------------------------------
def test_there_are_pages():
    assert PAGES, "no xeps/*.md found"
    assert README.is_file()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_xep_page_citations_exist(page):
    found = problems(page)
    assert not found, (f"{len(found)} broken citation(s) in {rel(page)}:\n"
                       + "\n".join(found))


def test_readme_citations_exist():
    found = problems(README)
    assert not found, (f"{len(found)} broken citation(s) in README.md:\n"
                       + "\n".join(found))


# -- the checker checks itself -----------------------------------------------------
def test_the_checker_finds_what_is_missing(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "See `src/no_such_file.rs`, `xmpp::disco::tests::no_such_test`,\n"
        "`no_such_module::tests::x` and `tests/test_upload.py::test_no_such`.\n"
        "```\n`src/inside_a_fence.rs`\n```\n", encoding="utf-8")
    found = problems(page, "page.md")
    assert len(found) == 4, found
    assert "page.md:1: `src/no_such_file.rs`" in found[0]
    assert "no `fn no_such_test`" in found[1]
    assert "no module file" in found[2]
    assert "no `def test_no_such` in tests/test_upload.py" in found[3]
