"""The state of an explore ``DIR``: what identifies it, how a call continues it, what a round trains on.

``DIR/explore.json`` records the inputs and settings (all but the round budget); a later call with
the same ones continues the ``DIR`` (each stage with a ``done.json`` is kept), any other is refused.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..._core.errors import GMVAEInputError
from ..._core.files import atomic_write_json
from .inputs import Inputs, System
from .settings import EXPLORE_FORMAT, ExploreSettings

__all__ = ["Exploration", "Blocks", "identity", "prepare_dir", "training_blocks", "round_plan", "normalised_weights",
           "json_safe", "read_json"]


@dataclass
class Exploration:
    """What the stages of one :func:`explore` call share.

    Attributes
    ----------
    out : pathlib.Path
        ``DIR``.
    cfg : ExploreSettings
    sysm : System
    fspec : FeatureSpec
    traj_files : list of pathlib.Path
        The given trajectories (empty when ``data`` was given).
    top : path or None
        Their topology.
    progress : callable or None
        tqdm-like class for the biased runs.
    log : callable
        Receives one line per stage.
    """

    out: Path
    cfg: ExploreSettings
    sysm: System
    fspec: Any
    traj_files: list
    top: Any
    progress: Optional[Callable]
    log: Callable[[str], None]


@dataclass
class Blocks:
    """The training frames of one round: the given trajectories, then each earlier round's biased frames.

    Attributes
    ----------
    features : list of (n_frames_i, n_features) ndarray
    logw : list of (n_frames_i,) ndarray
        Log-weights of the frames at the run temperature (0 for unbiased frames).
    names : list of str
        ``input[i]`` and ``round_NN``.
    """

    features: list
    logw: list
    names: list

    @property
    def n_frames(self) -> int:
        return int(sum(len(b) for b in self.features))


def identity(cfg: ExploreSettings, sysm: System, fspec: Any, traj_files: list[Path], data: Any, input_logw: Any) -> dict:
    """The content of ``explore.json``: what a ``DIR`` must match to be continued."""
    return {
        "format": EXPLORE_FORMAT, "version": 1,
        "settings": {k: v for k, v in asdict(cfg).items() if k != "rounds"},  # the budget may grow on a restart
        "system": {"name": sysm.name, "system_sha256": sysm.sha256, "n_atoms": int(sysm.system.getNumParticles())},
        "spec": fspec.to_dict(),
        "input": {"traj": [str(t.resolve()) for t in traj_files], "data": data is not None,
                  "input_logw": input_logw is not None},
    }


def prepare_dir(out: Path, identity: dict) -> None:
    """Make ``out`` a new explore ``DIR``, or check that it is one with this ``identity``."""
    meta = out / "explore.json"
    if out.exists() and not out.is_dir():
        raise GMVAEInputError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not meta.is_file():
            what = sorted(q.name for q in out.iterdir())[:5]
            raise GMVAEInputError(f"{out}: holds files that are not an explore run ({', '.join(what)}; no explore.json); "
                                  "choose another output directory")
        try:
            prev = json.loads(meta.read_text())
        except json.JSONDecodeError as exc:
            raise GMVAEInputError(f"{meta}: not valid JSON ({exc})") from None
        if prev.get("format") != EXPLORE_FORMAT:
            raise GMVAEInputError(f"{meta}: 'format' is {prev.get('format')!r}, expected {EXPLORE_FORMAT!r} (a DIR of another command)")
        want = json.loads(json.dumps(identity))
        if prev.get("system") != want["system"]:
            raise GMVAEInputError(f"{meta}: 'system' is {prev.get('system', {}).get('name')!r} with system_sha256 "
                                  f"{str(prev.get('system', {}).get('system_sha256'))[:12]}..., this explore has {want['system']['name']!r} "
                                  f"({want['system']['system_sha256'][:12]}...): a DIR of another system; choose another output directory")
        for key in ("spec", "input", "settings"):
            if prev.get(key) != want[key]:
                diff = [k for k in sorted(set(prev.get(key) or {}) | set(want[key])) if (prev.get(key) or {}).get(k) != want[key].get(k)]
                raise GMVAEInputError(f"{meta}: '{key}' differs ({', '.join(map(str, diff[:5]))}): {out} holds an explore "
                                      "with other inputs or settings; give the same ones to continue it, or another output directory")
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(meta, identity)


def _slices(lengths: Sequence[int]) -> list[slice]:
    ends = np.cumsum(lengths)
    return [slice(int(e - n), int(e)) for e, n in zip(ends, lengths)]


def training_blocks(out: Path, inputs: Inputs, r: int) -> Blocks:
    """The frames round ``r`` trains on: the given ones and the biased frames of rounds ``0 .. r - 1``."""
    lengths = inputs.lengths
    blocks = Blocks(list(inputs.features), [inputs.frames["logw"][s] for s in _slices(lengths)],
                    [f"input[{i}]" for i in range(len(lengths))])
    for q in range(r):
        a = out / f"round_{q:02d}" / "analysis"
        x = np.load(a / "features.npy")
        if len(x) == 0:  # a run that heated up before its first checkpoint
            continue
        blocks.features.append(x)
        fr = np.load(a / "frames.npz")
        # a round that continued a biased run analyses all of it but trains on its own frames only
        blocks.logw.append(fr["traj_logw"][fr["traj_segment"]] if "traj_segment" in fr else fr["traj_logw"])
        blocks.names.append(f"round_{q:02d}")
    return blocks


def round_plan(out: Path, r: int, cfg: ExploreSettings) -> dict:
    """Which CV round ``r`` biases, how, and whether it continues the biased run of round ``r - 1``.

    Returns (and keeps in ``round_NN/plan.json``, so that a restarted round does what it began)
    ``{"cv_round": k, "method": m, "seed": s, "continues": r - 1 or None, "segment": i,
    "reason": ...}``: the round biases the export of round ``k`` with method ``m`` (seed ``s``);
    ``segment`` counts the rounds of that run before this one. With ``cv_policy="keep"``, once
    round ``r - 1`` crossed at least ``keep_min_transitions_per_ns`` times per ns (its
    ``analysis.json``) its CV is kept: the first kept round starts a run of ``keep_method`` on it
    (when that differs from the method of round ``r - 1``), the later ones continue that run (the
    round after that first one whatever it crossed: a fresh bias fills first); a round after one
    that crossed less, or whose run the heating check stopped, biases its own GMVAE with
    ``method`` from a fresh bias. With ``"retrain"``
    every round biases its own.
    """
    path = out / f"round_{r:02d}" / "plan.json"
    if path.is_file():
        return read_json(path)
    own = {"cv_round": r, "method": cfg.method, "seed": cfg.seed + 1000 * r, "continues": None, "segment": 0}
    if r == 0:
        plan = {**own, "reason": "round 0: the GMVAE of the given frames"}
    elif cfg.cv_policy == "retrain":
        plan = {**own, "reason": "cv_policy 'retrain'"}
    else:
        prev = read_json(out / f"round_{r - 1:02d}" / "plan.json")
        prev_analysis = read_json(out / f"round_{r - 1:02d}" / "analysis" / "analysis.json")
        rate = prev_analysis.get("transitions_per_ns")
        keep_method = cfg.keep_method or prev["method"]
        crossed = f"round {r - 1} crossed {rate:.3g} times per ns" if rate is not None else ""
        filling = prev["continues"] is None and prev["cv_round"] != r - 1  # the first round of a kept CV's new run
        if prev_analysis.get("unstable"):
            plan = {**own, "reason": f"round {r - 1}'s biased run heated up (the CV too steep for the time step): "
                                     "this round's GMVAE, a fresh bias"}
        elif filling:
            plan = {"cv_round": prev["cv_round"], "method": prev["method"], "seed": prev["seed"], "continues": r - 1,
                    "segment": prev["segment"] + 1,
                    "reason": f"round {r - 1} started a {prev['method']} run on the kept CV of round {prev['cv_round']}: "
                              "continued (its first round fills the bias)"}
        elif rate is None or rate < cfg.keep_min_transitions_per_ns:
            what = crossed or "no named states to count crossings on"
            plan = {**own, "reason": f"{what} (< {cfg.keep_min_transitions_per_ns:g}): this round's GMVAE, a fresh bias"}
        elif keep_method != prev["method"]:
            plan = {**own, "cv_round": prev["cv_round"], "method": keep_method,
                    "reason": f"{crossed} on the CV of round {prev['cv_round']}: that CV kept, a {keep_method} run on it"}
        else:
            plan = {"cv_round": prev["cv_round"], "method": prev["method"], "seed": prev["seed"], "continues": r - 1,
                    "segment": prev["segment"] + 1,
                    "reason": f"{crossed} on the CV of round {prev['cv_round']}: that CV kept, its {prev['method']} run continued"}
    atomic_write_json(path, plan)
    return plan


def normalised_weights(logw: np.ndarray) -> np.ndarray:
    """Weights ``exp(logw)`` scaled to mean 1 (each run counts by its frame count)."""
    w = np.exp(logw - logw.max())
    return w * (len(w) / w.sum())


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None, NumPy scalars as Python numbers, tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


def read_json(p: Path) -> dict:
    """The content of the JSON file ``p``."""
    return json.loads(p.read_text())
