"""README.md's commands, read from README.md (not copied here) and run or checked.

- "Two commands on a fresh machine": the fenced bash block is parsed. ``pip install -e .`` is not
  run when the package imports from this checkout (it does under the tests: conftest puts the
  checkout first on sys.path); ``gmvae-cv demo --out gmvae_demo`` is run as written with
  ``--quick`` appended (the full demo takes minutes), in a temporary folder, through the function
  that pyproject.toml names as the ``gmvae-cv`` entry point, by ``tests/workflows/test_demo.py`` (one run
  serves both). ``bash scripts/test.sh`` is not run
  (it runs this suite); the script must exist, pass ``bash -n`` and be what ``.ci/run`` runs.
- "Python API": the block runs as written (about 15 s here), in a temporary folder.
- Every other ``gmvae-cv`` command in the README's fenced bash blocks parses; the command-line
  synopsis (placeholders, optional parts in brackets) names subcommands and options that exist.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from md_commands import check_gmvae_cv_command, fenced_blocks, readme_two_commands, section, shell_commands

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_two_commands_as_written():
    cmds = readme_two_commands()
    assert cmds == [["pip", "install", "-e", "."], ["gmvae-cv", "demo", "--out", "gmvae_demo"], ["bash", "scripts/test.sh"]], cmds


def test_second_command_is_the_ci_command():
    _, _, test_cmd = readme_two_commands()
    script = ROOT / test_cmd[1]
    assert test_cmd[0] == "bash" and script.is_file()
    assert script.read_text().startswith("#!/usr/bin/env bash")
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    ci = ROOT / ".ci" / "run"
    run_lines = [shlex.split(line) for line in ci.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert ["exec", *test_cmd] in run_lines, f".ci/run does not run {' '.join(test_cmd)}"


def test_python_api_block_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = fenced_blocks(section(README, "Python API"), "python")
    assert blocks, "no python block under 'Python API'"
    code = blocks[0][2]
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), ns)
    printed = capsys.readouterr().out.strip().splitlines()
    # the block prints the accuracy against the exact wells; the README promises >= 0.95
    assert float(printed[-1]) >= 0.95
    assert (tmp_path / "fw_run" / "model.pt").is_file() and ns["run"].config.n_clusters == 4


def test_readme_gmvae_cv_commands_exist():
    cmds = [c for _, _, body in fenced_blocks(README, "bash") for c in shell_commands(body) if c[0] == "gmvae-cv"]
    seen = {check_gmvae_cv_command(c) for c in cmds}
    # the synopsis: placeholders (N, K, RUN) and optional parts in brackets; options must exist
    synopsis = fenced_blocks(section(README, "Command line"), "")[0][2]
    for line in synopsis.splitlines():
        line = re.sub(r"[\[\]]", " ", line.split("#")[0]).replace("...", " ")
        if line.startswith("gmvae-cv"):
            words = shlex.split(line)
            words[1] = words[1].split("|")[0]
            seen.add(check_gmvae_cv_command(words, parse=False))
    assert {"demo", "export", "check", "bias", "fes", "msm", "train", "features", "transform"} <= seen, seen
