"""Commands quoted in Markdown files, for tests that run or parse them (not copies of them)."""

from __future__ import annotations

import importlib
import re
import shlex
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_FENCE = re.compile(r"^[ \t]*```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)^[ \t]*```[ \t]*$", re.M | re.S)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$", re.M)


def fenced_blocks(text: str, lang: str | None = None) -> list[tuple[str, str, str]]:
    """(heading above the block, language, body) of every fenced block, in order."""
    out = []
    for m in _FENCE.finditer(text):
        headings = [h.group(2) for h in _HEADING.finditer(text, 0, m.start())]
        if lang is None or m.group("lang") == lang:
            out.append((headings[-1] if headings else "", m.group("lang"), m.group("body")))
    return out


def fenced_spans(text: str) -> list[tuple[str, str, int, int]]:
    """(language, body, start, end) of every fenced block: offsets into ``text``, for tests that
    look at what stands around a block (e.g. a note under it)."""
    return [(m.group("lang"), m.group("body"), m.start(), m.end()) for m in _FENCE.finditer(text)]


def strip_fences(text: str) -> str:
    """``text`` without its fenced blocks (links and inline code outside them)."""
    return _FENCE.sub("", text)


def section(text: str, heading: str) -> str:
    """The text under a heading (up to the next heading of the same or a higher level)."""
    for h in _HEADING.finditer(text):
        if h.group(2) == heading:
            level = len(h.group(1))
            rest = text[h.end():]
            nxt = re.search(rf"^#{{1,{level}}}\s", rest, re.M)
            return rest[: nxt.start()] if nxt else rest
    raise KeyError(f"no heading {heading!r}")


def shell_commands(body: str) -> list[list[str]]:
    """Shell lines of a block, continuation lines joined, comments dropped, split like the shell;
    a line with '&&', ';' or a background '&' gives one command per part."""
    joined = re.sub(r"\\\n\s*", " ", body)
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        cmd: list[str] = []
        for w in words:
            if w in ("&&", "&", ";"):
                out.append(cmd)
                cmd = []
            else:
                cmd.append(w)
        out.append(cmd)
    return [c for c in out if c]


def inline_commands(text: str, program: str) -> list[list[str]]:
    """Inline code spans that start with ``program``, split like the shell."""
    spans = re.findall(r"(?<!`)`([^`]+)`(?!`)", _FENCE.sub("", text))
    return [shlex.split(" ".join(s.split())) for s in spans if s.split() and s.split()[0] == program]


def check_gmvae_cv_command(cmd: list[str], *, parse: bool = True) -> str:
    """A `gmvae-cv ...` command quoted in the docs: its subcommand and every --option exist; with
    ``parse``, a complete command (one that names --out, or `check EXP`) also parses as a whole
    (turn off for synopsis lines with placeholders such as N). Returns the subcommand. Raises
    AssertionError (or SystemExit from argparse) otherwise."""
    import argparse

    from gmvae_cv.cli import build_parser

    assert cmd[0] == "gmvae-cv", cmd
    words = [w for w in cmd[1:] if w != "..."]
    parser = build_parser()
    while words and words[0].startswith("-"):  # options before the verb: -v, --help
        assert words[0] in parser._option_string_actions, f"gmvae-cv has no option {words[0]}: {cmd}"
        if words[0] in ("-h", "--help"):
            return "--help"
        words = words[1:]
    sub_action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert words and words[0] in sub_action.choices, f"no subcommand {words[:1]} in {cmd}"
    sub = sub_action.choices[words[0]]
    for w in words[1:]:
        if w.startswith("--"):
            assert w.split("=")[0] in sub._option_string_actions, f"gmvae-cv {words[0]} has no option {w}: {cmd}"
    if parse and ("--out" in words or words[0] == "check"):
        parser.parse_args(words)
    return words[0]


def readme_two_commands() -> list[list[str]]:
    """The shell commands of README.md's "Two commands on a fresh machine" block."""
    blocks = fenced_blocks(section((ROOT / "README.md").read_text(), "Two commands on a fresh machine"), "bash")
    assert len(blocks) == 1, "expected one bash block under 'Two commands on a fresh machine'"
    return shell_commands(blocks[0][2])


def entry_point():
    """The function pyproject.toml names as the ``gmvae-cv`` console script."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = scripts["gmvae-cv"].split(":")
    return getattr(importlib.import_module(module), func)
