"""gmvae_cv.workflows.seeded: short unbiased runs from given starts, on Dask, each folder whole or absent."""

import json

import numpy as np
import openmm
import pytest

from gmvae_cv._core.errors import GMVAEInputError
from gmvae_cv.systems import AlanineDipeptide, alanine_basin
from gmvae_cv.systems.alanine import alanine_dipeptide_pdb
from gmvae_cv.workflows.rates.states import alanine_start
from gmvae_cv.workflows.seeded import SeededSettings, run_seeded


@pytest.fixture
def vacuum(tmp_path):
    ala = AlanineDipeptide()
    xml = tmp_path / "system.xml"
    xml.write_text(openmm.XmlSerializer.serialize(ala.create_system()))
    starts = {"C7eq": np.stack([ala.positions, ala.positions]), "C7ax": alanine_start("C7ax", None, 0)[None]}
    return xml, starts


def test_runs_start_where_given_resume_and_refuse_other_settings(vacuum, tmp_path):
    import mdtraj as md

    xml, starts = vacuum
    s = SeededSettings(ns_per_run=0.002, report_ps=0.1, platform="Reference")
    res = run_seeded(xml, alanine_dipeptide_pdb(), starts, tmp_path / "out", s, workers=1)
    assert res["ran"] == 3 and abs(res["ns"] - 0.006) < 1e-12
    for state, folders in res["runs"].items():
        for f in folders:
            r = json.loads((tmp_path / f / "result.json").read_text())
            assert r["state"] == state and r["n_frames"] == 20
            t = md.load(str(tmp_path / f / "traj.dcd"), top=str(alanine_dipeptide_pdb()))
            assert t.n_frames == 20
            phi, psi = md.compute_phi(t)[1][:3, 0], md.compute_psi(t)[1][:3, 0]  # 0.1-0.3 ps after the start
            assert np.all(alanine_basin(phi, psi) == {"C7eq": 0, "C7ax": 1}[state])
    seeds = {json.loads((tmp_path / f / "result.json").read_text())["seed"] for fs in res["runs"].values() for f in fs}
    assert len(seeds) == 3
    again = run_seeded(xml, alanine_dipeptide_pdb(), starts, tmp_path / "out", s, workers=1)
    assert again["ran"] == 0 and again["runs"] == res["runs"]
    with pytest.raises(GMVAEInputError, match="settings"):
        run_seeded(xml, alanine_dipeptide_pdb(), starts, tmp_path / "out", SeededSettings(ns_per_run=0.004, report_ps=0.1,
                                                                                          platform="Reference"))
    other = {"C7eq": starts["C7eq"] + 0.01, "C7ax": starts["C7ax"]}
    with pytest.raises(GMVAEInputError, match="starts_sha256"):
        run_seeded(xml, alanine_dipeptide_pdb(), other, tmp_path / "out", s)


def test_bad_starts_and_settings_are_refused_naming_the_field(vacuum, tmp_path):
    xml, starts = vacuum
    s = SeededSettings(ns_per_run=0.002, report_ps=0.1, platform="Reference")
    with pytest.raises(GMVAEInputError, match=r"starts\['C7eq'\] has shape \(2, 21, 3\), expected \(n_runs >= 1, 22, 3\)"):
        run_seeded(xml, alanine_dipeptide_pdb(), {"C7eq": starts["C7eq"][:, :21]}, tmp_path / "a", s)
    with pytest.raises(GMVAEInputError, match="'report_ps' is 0.0015"):
        run_seeded(xml, alanine_dipeptide_pdb(), starts, tmp_path / "b", SeededSettings(ns_per_run=0.002, report_ps=0.0015))
    with pytest.raises(GMVAEInputError, match="empty"):
        run_seeded(xml, alanine_dipeptide_pdb(), {}, tmp_path / "c", s)
    with pytest.raises(GMVAEInputError, match="file not found"):
        run_seeded(tmp_path / "missing.xml", alanine_dipeptide_pdb(), starts, tmp_path / "d", s)
    assert not any((tmp_path / n).exists() for n in "abcd")
