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
