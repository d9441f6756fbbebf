"""The XEP pages (xeps/*.md) and README.md cite only things that exist.

Checked, in inline code spans (`...`) outside fenced code blocks:

- every `src/...`, `tests/...` or `examples/...` path exists (a glob such as
  `tests/*.py` must match something);
- every Rust unit test cited as `a::b::tests::name` is a `fn name` marked as
  a test inside the inline `mod tests` of `src/a/b.rs` or `src/a/b/mod.rs`;
- every Python test cited as `tests/test_x.py::test_y` or `test_x.py::test_y`
  (a `[parameter]` after it is allowed) is a `def test_y` in `tests/test_x.py`;
- a Python test cited by its bare name, `test_y`, is a `def test_y` in one of
  the `tests/test_*.py` files (the page names the file nearby).

A failure names the page and line, the citation, and what is missing.

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
    r"^(?:tests/)?(test_\w+\.py)::(?:[A-Z]\w*::)?(test_\w+)(?:\[[^\]]*\])?$")
BARE_PY_TEST = re.compile(r"^(test_\w+)(?:\[[^\]]*\])?$")
MOD_TESTS = re.compile(r"^(?:pub(?:\([\w:]+\))?\s+)?mod tests\s*([{;])")
TEST_ATTRIBUTE = re.compile(r"#\[(?:[\w:]+::)?test\b")


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


class Repository:
    """What the citations are checked against: the files under `root`."""

    def __init__(self, root):
        self.root = Path(root)
        self._python_tests = None

    def rel(self, path):
        return Path(path).relative_to(self.root).as_posix()

    def missing_path(self, path):
        path = path.rstrip(".:")
        if any(c in path for c in "*?["):
            return None if list(self.root.glob(path)) else f"no file matches {path}"
        return None if (self.root / path).exists() else f"{path} does not exist"

    def rust_tests_module(self, module):
        """(lines of the inline `mod tests`, its file), or (None, why not)."""
        parts = module.split("::")
        candidates = [self.root / "src" / Path(*parts).with_suffix(".rs"),
                      self.root / "src" / Path(*parts) / "mod.rs"]
        source = next((p for p in candidates if p.is_file()), None)
        if source is None:
            return None, ("no module file: neither "
                          + " nor ".join(self.rel(p) for p in candidates) + " exists")
        lines = source.read_text(encoding="utf-8").split("\n")
        start = next((i for i, line in enumerate(lines) if MOD_TESTS.match(line)), None)
        if start is None:
            return None, f"{self.rel(source)} has no `mod tests`"
        if MOD_TESTS.match(lines[start]).group(1) == ";":  # `mod tests;`: a file
            outline = (source.parent if source.name == "mod.rs"
                       else source.parent / source.stem) / "tests.rs"
            if not outline.is_file():
                return None, f"{self.rel(source)} declares `mod tests;` but has no tests.rs"
            return outline.read_text(encoding="utf-8").split("\n"), self.rel(outline)
        # rustfmt'ed: the module ends at the first `}` back at column 0
        end = next((i for i in range(start + 1, len(lines))
                    if re.match(r"^\}\s*$", lines[i])), len(lines))
        return lines[start + 1:end], self.rel(source)

    def missing_rust_test(self, module, name):
        body, where = self.rust_tests_module(module)
        if body is None:
            return where
        fn = re.compile(r"^\s*(?:pub(?:\([\w:]+\))?\s+)?(?:async\s+)?fn\s+"
                        + re.escape(name) + r"\s*[<(]")
        for i, line in enumerate(body):
            if fn.match(line):
                # its attributes: the lines above, up to the end of the item before
                above = []
                for prev in reversed(body[max(0, i - 10):i]):
                    if not prev.strip() or prev.rstrip().endswith(("}", ";")):
                        break
                    above.append(prev)
                if TEST_ATTRIBUTE.search("\n".join(above)):
                    return None
                return f"`fn {name}` in `mod tests` of {where} is not marked #[test]"
        return f"no `fn {name}` in `mod tests` of {where}"

    def missing_python_test(self, file, name):
        path = self.root / "tests" / file
        if not path.is_file():
            return f"tests/{file} does not exist"
        text = path.read_text(encoding="utf-8")
        if re.search(r"^\s*(?:async\s+)?def\s+" + re.escape(name) + r"\s*\(", text, re.M):
            return None
        return f"no `def {name}` in tests/{file}"

    def missing_bare_python_test(self, name):
        if self._python_tests is None:
            self._python_tests = set()
            for path in (self.root / "tests").glob("test_*.py"):
                self._python_tests.update(re.findall(
                    r"^\s*(?:async\s+)?def\s+(test_\w+)\s*\(",
                    path.read_text(encoding="utf-8"), re.M))
        if name in self._python_tests:
            return None
        return f"no `def {name}` in any tests/test_*.py"

    def problems(self, page):
        """One line per broken citation of `page`: where, what, why."""
        found = []
        for line, span in code_spans(page):
            where = f"{self.rel(page)}:{line}: `{span}`"
            for m in PATH.finditer(span):
                why = self.missing_path(m.group(1).split("::")[0])
                if why:
                    found.append(f"{where}: path: {why}")
            checks = [(RUST_TEST, "Rust test", self.missing_rust_test),
                      (PY_TEST, "Python test", self.missing_python_test),
                      (BARE_PY_TEST, "Python test", self.missing_bare_python_test)]
            for pattern, kind, missing in checks:
                m = pattern.match(span)
                why = m and missing(*m.groups())
                if why:
                    found.append(f"{where}: {kind}: {why}")
        return found


def report(page, found):
    return f"{len(found)} broken citation(s) in {page}:\n" + "\n".join(found)


# -- the tests -------------------------------------------------------------------
def test_there_are_pages():
    assert PAGES, "no xeps/*.md found"
    assert README.is_file(), "no README.md"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_xep_page_citations_exist(page):
    found = Repository(ROOT).problems(page)
    assert not found, report(f"xeps/{page.name}", found)


def test_readme_citations_exist():
    found = Repository(ROOT).problems(README)
    assert not found, report("README.md", found)


# -- the checker itself, on a repository of its own --------------------------------
def test_the_checker_finds_what_is_missing(tmp_path):
    (tmp_path / "src/a").mkdir(parents=True)
    (tmp_path / "src/a/b.rs").write_text(
        "pub fn helper() {}\n\n"
        "#[cfg(test)]\nmod tests {\n    use super::*;\n\n"
        "    fn not_a_test() {}\n\n"
        "    /// A doc line.\n    #[test]\n    fn real() {\n        helper();\n    }\n\n"
        "    #[tokio::test(flavor = \"multi_thread\")]\n    async fn real_async() {}\n"
        "}\n", encoding="utf-8")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/test_x.py").write_text("def test_y():\n    pass\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "Present: `src/a/b.rs`, `src/a/`, `tests/*.py`, `a::b::tests::real`,\n"
        "`a::b::tests::real_async`, `tests/test_x.py::test_y`, `test_x.py::test_y[p]`,\n"
        "`test_y` and `cargo test --manifest-path tests/test_x.py`.\n"
        "```\n`src/inside_a_fence.rs` `a::b::tests::fenced`\n```\n"
        "Missing: `src/gone.rs`, `examples/*.toml`, `a::b::tests::gone`,\n"
        "`a::b::tests::not_a_test`, `a::b::tests::helper`, `a::c::tests::real`,\n"
        "`tests/test_x.py::test_gone`, `test_z.py::test_y`, `test_gone`.\n",
        encoding="utf-8")
    found = Repository(tmp_path).problems(page)
    expected = [
        "page.md:7: `src/gone.rs`: path: src/gone.rs does not exist",
        "page.md:7: `examples/*.toml`: path: no file matches examples/*.toml",
        "page.md:7: `a::b::tests::gone`: Rust test: no `fn gone` in `mod tests` of src/a/b.rs",
        "page.md:8: `a::b::tests::not_a_test`: Rust test: `fn not_a_test` in `mod tests` "
        "of src/a/b.rs is not marked #[test]",
        "page.md:8: `a::b::tests::helper`: Rust test: no `fn helper` in `mod tests` "
        "of src/a/b.rs",
        "page.md:8: `a::c::tests::real`: Rust test: no module file: neither src/a/c.rs "
        "nor src/a/c/mod.rs exists",
        "page.md:9: `tests/test_x.py::test_gone`: Python test: no `def test_gone` "
        "in tests/test_x.py",
        "page.md:9: `test_z.py::test_y`: Python test: tests/test_z.py does not exist",
        "page.md:9: `test_gone`: Python test: no `def test_gone` in any tests/test_*.py",
    ]
    assert found == expected
