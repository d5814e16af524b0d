"""The command line wraps the API: simulate -> train -> transform, and errors exit with status 2."""

import json
import logging

import numpy as np

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
