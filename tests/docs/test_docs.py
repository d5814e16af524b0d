"""README.md and docs/*.md stay true: their links resolve, their code compiles (and the cheap
blocks run), their `gmvae-cv` commands parse with the real parser, docs/cli.md is what the parser
generates, the architecture page names the package's real subpackages, and MkDocs builds the site
in strict mode (when mkdocs is installed: ``pip install -e ".[docs]"``)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from md_commands import check_gmvae_cv_command, fenced_spans, inline_commands, shell_commands, strip_fences

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNS_MARK = "<!-- the block above runs in tests/docs/test_docs.py -->"
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.M)


def _slug(heading: str) -> str:
    """An anchor as Python-Markdown's toc extension (MkDocs) writes it; GitHub's agrees on ours."""
    text = re.sub(r"[`*]", "", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(path: Path) -> set[str]:
    return {_slug(h) for h in _HEADING.findall(strip_fences(path.read_text()))}


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_pages_exist_and_readme_is_short():
    names = {p.name for p in PAGES}
    assert {"index.md", "cli.md", "export.md", "biasing.md", "benchmarks.md", "architecture.md"} <= names, names
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= 250, f"README.md has {n} lines; reference material belongs in docs/"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_relative_links_resolve(page):
    """Every relative link (and image) points at a file of the checkout, and its #anchor at a heading."""
    bad = []
    for target in _LINK.findall(strip_fences(page.read_text())):
        if re.match(r"^[a-z]+:", target) or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target}: no heading with anchor #{anchor} in {_name(dest)}")
    assert not bad, f"{_name(page)}: " + "; ".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_python_blocks_compile_and_marked_ones_run(page, tmp_path, monkeypatch):
    text = page.read_text()
    for i, (lang, body, _, end) in enumerate(fenced_spans(text)):
        if lang != "python":
            continue
        code = compile(body, f"{_name(page)} (python block {i})", "exec")
        if text[end:].lstrip().startswith(RUNS_MARK):
            monkeypatch.chdir(tmp_path)
            exec(code, {"__name__": "__docs__"})


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_gmvae_cv_commands_parse(page):
    """Commands in bash blocks parse with build_parser() (complete ones as a whole); commands in
    inline code name options that exist."""
    text = page.read_text()
    for lang, body, _, _ in fenced_spans(text):
        if lang in ("bash", "sh", "console"):
            for cmd in shell_commands(body):
                if cmd[0] == "gmvae-cv":
                    check_gmvae_cv_command(cmd)
    for cmd in inline_commands(text, "gmvae-cv"):
        if len(cmd) > 1:
            check_gmvae_cv_command(cmd, parse=False)


def test_module_map_is_generated_from_the_code():
    """docs/architecture.md's module map lists every module of the package with its docstring's first
    sentence (`python scripts/module_map.py --write`); a new, moved or renamed module makes it stale."""
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "module_map.py"), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    page = (ROOT / "docs" / "architecture.md").read_text()
    modules = sorted(p.relative_to(ROOT / "gmvae_cv").as_posix() for p in (ROOT / "gmvae_cv").rglob("*.py") if "__pycache__" not in p.parts)
    missing = [m for m in modules if f"| `{m}` |" not in page]
    assert not missing, f"modules missing from the module map: {missing}"


def test_cli_reference_is_generated_from_the_parser():
    """docs/cli.md is `python -m gmvae_cv.cli.reference` output; regenerate it when an option changes."""
    from gmvae_cv.cli.reference import render

    page = (ROOT / "docs" / "cli.md").read_text()
    assert page == render(), "docs/cli.md is stale: run `python -m gmvae_cv.cli.reference > docs/cli.md`"
    # and it lists every verb and every option of the parser
    import argparse

    from gmvae_cv.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert "`-v`/`--verbose`" in page
    for verb, parser in sub.choices.items():
        assert f"## `gmvae-cv {verb}`" in page
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or action.dest == "verbose":  # said once, on top
                continue
            for opt in action.option_strings:
                assert f"`{opt}`" in page, f"{verb} {opt} missing from docs/cli.md"


def test_architecture_page_names_the_real_subpackages():
    page = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`gmvae_cv/(\w+)/`", page))
    real = {p.name for p in (ROOT / "gmvae_cv").iterdir() if (p / "__init__.py").is_file()}
    assert named == real, f"named but absent: {named - real}; present but not on the page: {real - named}"


def test_mkdocs_builds_the_site_in_strict_mode(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:  # the interpreter that runs it (a mkdocs elsewhere on PATH won't do)
        pytest.skip('mkdocs is not installed in this environment (pip install -e ".[docs]")')
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(tmp_path / "site")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "site" / "cli" / "index.html").is_file()
