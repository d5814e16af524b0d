"""The command line wraps the API: simulate -> train -> transform, and errors exit with status 2."""

import json
import logging

import numpy as np
from pathlib import Path

from gmvae_cv.cli import main

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


def test_simulate_train_transform(tmp_path, capsys):
    data = tmp_path / "fw.npy"
    assert main(["simulate", "four-well", "--steps", "40000", "--stride", "50", "--walkers", "2", "--out", str(data), "--seed", "3"]) == 0
    files = [tmp_path / "fw_0.npy", tmp_path / "fw_1.npy"]
    assert all(f.is_file() for f in files)
    assert np.load(files[0]).shape == (801, 1)
    run = tmp_path / "run"
    weights = []
    for i, f in enumerate(files):
        w = tmp_path / f"w{i}.npy"
        np.save(w, np.ones(801))
        weights.append(str(w))
    rc = main(["train", "--data", *map(str, files), "--weights", *weights, "--k", "4", "--latent-dim", "1", "--out", str(run),
               "--epochs", "3", "--lag", "2", "--no-progress", "--qy-layers", "16,16"])
    assert rc == 0
    info = json.loads((run / "gmvae_run.json").read_text())
    assert info["config"]["lag"] == 2 and info["config"]["qy_layers"] == [16, 16] and info["weighted"]
    assert [d["n_frames"] for d in info["data"]] == [801, 801]
    out = tmp_path / "o.npz"
    assert main(["transform", str(run), "--data", str(files[0]), "--out", str(out), "--float32"]) == 0
    res = np.load(out)
    assert res["z"].shape == (801, 1) and res["z"].dtype == np.float32
    assert res["cluster_probs"].shape == (801, 4)
    np.testing.assert_allclose(res["cluster_probs"].sum(1), 1.0, atol=1e-5)
    # a second train into the finished run is refused, not overwritten
    capsys.readouterr()
    assert main(["train", "--data", str(files[0]), "--k", "4", "--latent-dim", "1", "--out", str(run), "--epochs", "1", "--no-progress"]) == 2
    assert "finished run" in capsys.readouterr().err


def test_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([[1.0, np.nan], [2.0, 3.0]]))
    assert main(["train", "--data", str(bad), "--k", "2", "--latent-dim", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "bad.npy" in err and "NaN" in err
    ok = tmp_path / "ok.npy"
    np.save(ok, np.ones((20, 2)))
    w = tmp_path / "w.npy"
    np.save(w, np.ones(19))
    assert main(["train", "--data", str(ok), "--weights", str(w), "--k", "2", "--latent-dim", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "w.npy" in err and "19 entries, expected 20" in err
    assert main(["transform", str(tmp_path), "--data", str(ok), "--out", str(tmp_path / "o.npz")]) == 2
    assert "not a gmvae-cv run directory" in capsys.readouterr().err


# ---------------------------------------------------------------- the parser is light
HEAVY = ("torch", "lightning", "mlcolvar", "openmm", "mdtraj", "deeptime", "matplotlib", "sklearn", "scipy")


def _verbs():
    import argparse

    from gmvae_cv.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def test_help_and_argument_errors_import_nothing_heavy(tmp_path):
    """--help, VERB --help and argument errors (missing, unknown, badly typed options) answer
    before torch, Lightning, mlcolvar, OpenMM, mdtraj or deeptime are imported: checked in a fresh
    interpreter through sys.modules, not by timing."""
    import subprocess
    import sys

    verbs = _verbs()
    assert {"simulate", "features", "train", "transform", "fes", "msm", "export", "check", "bias", "demo"} <= set(verbs)
    argvs = [["--help"], *[[v, "--help"] for v in verbs],
             ["train", "--data", "x.npy"],  # required options missing
             ["train", "--data", "x.npy", "--n-clusters", "2", "--latent-dim", "1", "--out", "r", "--qy-layers", "a,b"],
             ["fes", "COLVAR", "--cv", "phi", "--weights", "none", "--out", "f.dat", "--range=-pi:tau"],
             ["msm", "--dtraj", "d.npy", "--lags", "1,x", "--lag", "1", "--dt", "1", "--out", "m"],
             ["bias", "EXP", "--out", "r"],  # --steps/--ns missing
             ["nosuchverb"]]
    code = (
        "import json, sys\n"
        "from gmvae_cv.cli import main\n"
        f"codes = []\n"
        f"for argv in {argvs!r}:\n"
        "    try:\n        main(argv)\n        codes.append(None)\n"
        "    except SystemExit as e:\n        codes.append(e.code)\n"
        f"print(json.dumps({{'codes': codes, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["heavy"] == [], f"imported before any command ran: {out['heavy']}"
    n_help = 1 + len(verbs)
    assert out["codes"] == [0] * n_help + [2] * (len(argvs) - n_help), out["codes"]
    # the errors are argparse's, naming the option
    assert "--qy-layers: expected comma-separated integers, got 'a,b'" in res.stderr
    assert "--range: value is 'tau', expected a number (or a multiple of pi)" in res.stderr


def test_train_defaults_are_trainconfig_defaults():
    """The parser writes TrainConfig's defaults into --help without importing torch; they must be
    TrainConfig's (the command passes only the options given, so TrainConfig decides)."""
    import dataclasses

    from gmvae_cv import TrainConfig
    from gmvae_cv.cli.train import TRAIN_DEFAULTS

    config = dataclasses.asdict(TrainConfig())
    assert TRAIN_DEFAULTS == {k: config[k] for k in TRAIN_DEFAULTS}


def test_n_clusters_and_old_k_option():
    from gmvae_cv.cli import build_parser

    p = build_parser()
    base = ["train", "--data", "x.npy", "--latent-dim", "1", "--out", "r"]
    assert p.parse_args(base + ["--n-clusters", "3"]).n_clusters == 3
    assert p.parse_args(base + ["--k", "5"]).n_clusters == 5
    args = p.parse_args(base + ["--k", "5", "--epochs", "7"])
    assert args.epochs == 7 and args.lr is None  # unset options stay unset: TrainConfig's defaults apply
    assert p.parse_args(["-v", "demo"]).verbose and p.parse_args(["demo", "-v"]).verbose
    assert not p.parse_args(["demo"]).verbose


# ---------------------------------------------------------------- output for a person
PDB = Path(__file__).resolve().parents[2] / "gmvae_cv" / "data" / "alanine-dipeptide.pdb"


def _dcd(tmp_path, n_frames=60):
    import mdtraj as md

    t = md.load(str(PDB))
    rng = np.random.default_rng(0)
    xyz = t.xyz[0] + 0.01 * rng.standard_normal((n_frames, t.n_atoms, 3))
    path = tmp_path / "x.dcd"
    md.Trajectory(xyz.astype(np.float32), t.topology).save_dcd(str(path))
    return path


def test_dcd_reads_print_no_dcdplugin_lines_unless_verbose(tmp_path, capfd):
    """mdtraj's DCD reader prints 'dcdplugin) ...' from C code at every read (file descriptor 1,
    past sys.stdout): the command line keeps it off the terminal, -v shows it."""
    dcd = _dcd(tmp_path)
    capfd.readouterr()
    argv = ["features", "--traj", str(dcd), "--top", str(PDB), "--spec", "alanine-torsions", "--out", str(tmp_path / "f.npy")]
    assert main(argv) == 0
    quiet = capfd.readouterr()
    assert "dcdplugin" not in quiet.out + quiet.err
    assert "wrote" in quiet.out and "60 frames x 4 features" in quiet.out  # what the command prints still shows
    assert main(["-v", *argv]) == 0
    loud = capfd.readouterr()
    assert "dcdplugin" in loud.out + loud.err


def test_run_folder_log_keeps_the_noise_the_terminal_does_not_show(tmp_path, capfd):
    """train writes RUN/gmvae-cv.log: what the command printed, mdtraj's C-level lines and
    Lightning's INFO banners ('GPU available'), none of which but the first reach the terminal."""
    dcd = _dcd(tmp_path)
    run = tmp_path / "run"
    light = logging.getLogger("lightning.pytorch")
    level = light.level
    light.setLevel(logging.INFO)  # as in a fresh process (this module quiets it for the other tests)
    try:
        capfd.readouterr()
        rc = main(["train", "--traj", str(dcd), "--top", str(PDB), "--spec", "alanine-torsions", "--n-clusters", "2",
                   "--latent-dim", "1", "--epochs", "1", "--batch-size", "16", "--out", str(run), "--no-progress"])
    finally:
        light.setLevel(level)
    assert rc == 0
    term = capfd.readouterr()
    shown = term.out + term.err
    assert "trained GMVAE n_clusters=2 latent_dim=1 on 60 frames" in term.out
    assert "dcdplugin" not in shown and "GPU available" not in shown
    log = (run / "gmvae-cv.log").read_text()
    assert log.startswith("# ") and "gmvae-cv train --traj" in log.splitlines()[0]
    assert "dcdplugin" in log and "GPU available" in log and "trained GMVAE n_clusters=2" in log


def test_quiet_output_restores_descriptors_and_streams(tmp_path, capfd):
    """After the block, C-level writes reach the terminal again and sys.stdout is what it was."""
    import os
    import sys

    from gmvae_cv._core.quiet import quiet_output

    before = sys.stdout, sys.stderr
    with quiet_output(log_file=tmp_path / "a.log", title="t"):
        os.write(1, b"from C inside\n")
        print("printed inside")
    os.write(1, b"from C after\n")
    assert (sys.stdout, sys.stderr) == before
    out = capfd.readouterr().out
    assert "from C inside" not in out and "printed inside" in out and "from C after" in out
    log = (tmp_path / "a.log").read_text()
    assert "from C inside" in log and "printed inside" in log and "from C after" not in log


def test_demo_summary_is_for_a_person():
    """Numbers to their precision with units, not 42.749999996152496."""
    from gmvae_cv.cli.demo import format_summary

    text = format_summary({
        "check_passed": True, "transitions_biased": 171, "biased_ns": 4.0, "transitions_per_ns_biased": 42.749999996152496,
        "transitions_per_ns_unbiased": 0.0, "delta_f_c7ax_minus_c7eq_kjmol": 4.3721, "delta_f_c7ax_minus_c7eq_error_kjmol": None,
        "slowest_its_ps": 812.3456, "msm_lag_ps": 5.0,
    })
    assert "171 in 4 ns (42.7 per ns" in text and "42.749" not in text
    assert "4.4 kJ/mol" in text and "812 ps at lag 5 ps" in text
    assert "not computed" not in text
    text = format_summary({"check_passed": True, "transitions_biased": 0, "biased_ns": 1.0, "transitions_per_ns_biased": 0.0,
                           "transitions_per_ns_unbiased": 0.0, "delta_f_c7ax_minus_c7eq_kjmol": None,
                           "delta_f_c7ax_minus_c7eq_error_kjmol": None, "slowest_its_ps": 1.0, "msm_lag_ps": 5.0})
    assert "F(C7ax) - F(C7eq), reweighted:" in text and "not computed" in text


def test_input_errors_name_the_file_and_the_option(tmp_path, capsys):
    """A feature matrix with the wrong column count, or weights of the wrong shape: the message
    names the file (not only 'data'), for transform, msm --run --data and train --weights."""
    rng = np.random.default_rng(1)
    three, four = tmp_path / "three.npy", tmp_path / "four.npy"
    np.save(three, rng.standard_normal((200, 3)))
    np.save(four, rng.standard_normal((50, 4)))
    run = tmp_path / "run"
    assert main(["train", "--data", str(three), "--n-clusters", "2", "--latent-dim", "1", "--out", str(run),
                 "--epochs", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["transform", str(run), "--data", str(four), "--out", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err
    assert f"{four}: 'data' has 4 features, the model in {run} expects 3" in err, err
    assert main(["msm", "--run", str(run), "--data", str(four), "--lags", "1", "--lag", "1", "--dt", "1",
                 "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert f"{four}: 'data' has 4 features, the model expects 3" in err, err
    w2 = tmp_path / "w2.npy"
    np.save(w2, np.ones((200, 2)))
    assert main(["train", "--data", str(three), "--weights", str(w2), "--n-clusters", "2", "--latent-dim", "1",
                 "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert f"{w2}: 'weights' has 2 dimension(s)" in err, err
    # the API names the file when it is told which one
    from gmvae_cv import load_run
    import pytest
    from gmvae_cv._core.errors import GMVAEInputError

    with pytest.raises(GMVAEInputError, match="x.npy: 'data' has 4 features, the model expects 3"):
        load_run(run).transform(np.load(four), source="x.npy")
    with pytest.raises(GMVAEInputError, match="^'data' has 4 features, the model expects 3"):
        load_run(run).transform(np.load(four))


def test_quiet_output_keeps_library_warnings_and_logs_in_the_log(tmp_path, capfd):
    """Warnings raised outside gmvae_cv and library log records below ERROR go to the log only;
    gmvae-cv's own warnings and WARNING records show; -v (verbose) shows the libraries' too."""
    import warnings

    import pytest

    from gmvae_cv._core.quiet import quiet_output
    from gmvae_cv.analysis import PlumedFileWarning

    log = tmp_path / "a.log"
    with pytest.warns(PlumedFileWarning, match="ours: a truncated line") as seen:
        with quiet_output(log_file=log):
            warnings.warn("a library's deprecation", DeprecationWarning)
            warnings.warn("ours: a truncated line", PlumedFileWarning)
            logging.getLogger("somelib").warning("a library's warning record")
            logging.getLogger("gmvae_cv.test").warning("our warning record")
    assert [str(w.message) for w in seen] == ["ours: a truncated line"]
    err = capfd.readouterr().err
    assert "our warning record" in err and "a library's warning record" not in err
    text = log.read_text()
    assert "a library's deprecation" in text and "a library's warning record" in text and "our warning record" in text
    with quiet_output(verbose=True):
        logging.getLogger("somelib").info("a library's info record")
    assert "a library's info record" in capfd.readouterr().err
