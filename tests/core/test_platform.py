"""Platform choice and OpenMM-Torch builds (issue 18's CPU side). The GPU checks at the bottom run
only where OpenMM has a CUDA platform and the CUDA build of OpenMM-Torch is installed."""

from __future__ import annotations

import numpy as np
import pytest

from gmvae_cv import GMVAEInputError
from gmvae_cv._core.platform import check_openmmtorch_builds, check_platform_request, openmmtorch_builds


def test_cuda_request_without_cuda_names_the_packages():
    with pytest.raises(GMVAEInputError, match="openmm-cuda-13.*acellera-openmmtorch-cu13"):
        check_platform_request("CUDA", ["Reference", "CPU"])
    with pytest.raises(GMVAEInputError, match="expected one of \\['CPU', 'Reference'\\]"):
        check_platform_request("Cuda", ["Reference", "CPU"])
    assert check_platform_request("CPU", ["Reference", "CPU"]) == "CPU"


def test_cuda_platform_with_the_cpu_plugin_is_refused():
    with pytest.raises(GMVAEInputError, match="CPU build .*acellera-openmmtorch-cpu.*cannot run on CUDA"):
        check_platform_request("CUDA", ["Reference", "CPU", "CUDA"], builds={"acellera-openmmtorch-cpu": "cpu"})
    assert check_platform_request("CUDA", ["CUDA"], builds={"acellera-openmmtorch-cu13": "cuda"}) == "CUDA"
    # a torsion-only CustomCVForce needs no OpenMM-Torch at all
    assert check_platform_request("CUDA", ["CUDA"], uses_torch=False, builds={}) == "CUDA"


def test_mixed_plugin_builds_are_detected():
    with pytest.raises(GMVAEInputError, match="pip uninstall -y acellera-openmmtorch-cpu"):
        check_openmmtorch_builds({"acellera-openmmtorch-cpu": "cpu", "acellera-openmmtorch-cu13": "cuda"})
    assert check_openmmtorch_builds({"acellera-openmmtorch-cpu": "cpu"}) == "cpu"
    # this environment: the default install has exactly the CPU build
    assert openmmtorch_builds() == {"acellera-openmmtorch-cpu": "cpu"}


def test_bias_platform_cuda_is_refused_before_running(tmp_path, capsys):
    from gmvae_cv.cli import main

    rc = main(["bias", "export/alanine_dipeptide", "--system", "alanine-dipeptide", "--steps", "10",
               "--out", str(tmp_path / "run"), "--platform", "CUDA"])
    assert rc == 2
    assert "acellera-openmmtorch-cu13" in capsys.readouterr().err


def test_train_accelerator_option_parses():
    from gmvae_cv.cli import build_parser

    args = build_parser().parse_args(["train", "--data", "x.npy", "--n-clusters", "2", "--latent-dim", "1",
                                      "--out", "r", "--accelerator", "auto"])
    assert args.accelerator == "auto"


def _cuda_ready() -> bool:
    import openmm

    names = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
    return "CUDA" in names and openmmtorch_builds().get("acellera-openmmtorch-cu13") == "cuda"


@pytest.mark.skipif("not _cuda_ready()", reason="needs OpenMM's CUDA platform and acellera-openmmtorch-cu13 "
                    "(scripts/install_cuda.sh on a GPU machine); CI and this project's machines have no GPU")
def test_fused_force_on_cuda_equals_reference():
    import openmm
    from openmm import unit

    from gmvae_cv import openmm_component_force

    frames = np.load("export/alanine_dipeptide/frames.npy")
    out = {}
    for name in ("Reference", "CUDA"):
        system = openmm.System()
        for _ in range(frames.shape[1]):
            system.addParticle(1.0)
        ccv = openmm.CustomCVForce("s0 + 2*s1")
        ccv.addCollectiveVariable("s0", openmm_component_force("export/alanine_dipeptide/model_openmm.pt", 0))
        ccv.addCollectiveVariable("s1", openmm_component_force("export/alanine_dipeptide/model_openmm.pt", 1))
        system.addForce(ccv)
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(name))
        rows = []
        for pos in frames[:8]:
            ctx.setPositions(pos)
            st = ctx.getState(getEnergy=True, getForces=True)
            rows.append((st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                         st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)))
        out[name] = rows
    for (e_ref, f_ref), (e_gpu, f_gpu) in zip(out["Reference"], out["CUDA"]):
        assert abs(e_ref - e_gpu) < 1e-4 * max(1.0, abs(e_ref))
        assert np.max(np.abs(f_ref - f_gpu)) < 1e-3 * max(1.0, np.max(np.abs(f_ref)))
