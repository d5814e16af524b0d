"""Fixtures the biasing tests share: the dipeptide, the torsion CV, one torch thread per test."""

import pytest
import torch


@pytest.fixture(scope="module")
def ala():
    """Alanine dipeptide in vacuum (the bundled C7eq structure)."""
    from gmvae_cv.systems import AlanineDipeptide

    return AlanineDipeptide()


@pytest.fixture(scope="module")
def torsion_cv(tmp_path_factory):
    """phi/psi in rad as a CV file (periodic components)."""
    from gmvae_cv.deploy.loaders import feature_cv
    from gmvae_cv.features import alanine_backbone_torsions

    return feature_cv(alanine_backbone_torsions(transform="raw"), path=tmp_path_factory.mktemp("cv") / "torsions.pt")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
