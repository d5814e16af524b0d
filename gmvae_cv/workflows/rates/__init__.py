r"""Rates by infrequent metadynamics: independent runs on Dask, each stopped at its first transition.

:func:`run_rates` runs ``n_runs`` independent infrequent-metadynamics runs (Tiwary and Parrinello,
PRL 111, 230602, 2013) from one state to another, per deposition pace and per direction, through
``dask.distributed``, then :func:`summarize_rates` computes the rescaled escape times, the mean
time with its interval, the Kolmogorov-Smirnov p-value against an exponential (Salvalaglio,
Tiwary and Parrinello, JCTC 10, 1420, 2014), the median/mean ratio, the pace test and the free
energy difference the two directions' ratio implies. ``gmvae-cv rates`` is the same on the command line.

The output folder ``DIR``::

    DIR/rates.json                  the manifest: system, CV (sha256), states, parameters; a DIR
                                    holding runs of another system, CV or states is refused
    DIR/runs/<from>-<to>/pace<P>/run<i>/result.json
                                    one finished run: biased time, rescaled time, acceleration,
                                    bias at the crossing, hills, wall time, seed
    DIR/runs/.../run<i>/COLVAR      time (ps), CV, bias (kJ/mol), state label, every chunk
    DIR/summary.json, ecdf.png, tau_vs_pace.png

Each run is written in a temporary folder next to its final place and renamed into place when it
has finished (``os.rename`` of a folder is atomic on one file system): a run folder exists whole
or not at all. A killed command started again runs only the runs whose folders are missing. Dask
reruns the task of a worker that died (``retries``, and the scheduler's own rescheduling of a
lost worker's tasks); a task whose folder already exists when it ends (a rerun of a task whose
first attempt did finish) discards its copy, so no run is counted twice. Seeds are derived from
``seed``, direction, pace and run index, so a rerun repeats the same run.

Dask. By default a ``LocalCluster`` with ``workers`` single-threaded worker processes on this
machine. ``scheduler="tcp://host:8786"`` connects to a running cluster instead, for example one that
dask-jobqueue started on SLURM::

    from dask_jobqueue import SLURMCluster
    cluster = SLURMCluster(cores=1, processes=1, memory="2GB", walltime="04:00:00")
    cluster.scale(jobs=32)            # 32 SLURM jobs, one worker each
    print(cluster.scheduler_address)  # pass it as --scheduler / scheduler=

(or ``dask scheduler`` on one node and ``dask worker tcp://host:8786 --nthreads 1`` in each job).
The workers need gmvae-cv installed and ``DIR`` on a shared file system. An address that
cannot be reached is an error within ``connect_timeout`` seconds, before anything is written.

States. ``C7eq``, ``C7ax`` (alanine dipeptide): the circular core sets on (phi, psi) of
:func:`gmvae_cv.systems.alanine_basin`; ``cluster:<i>``: frames whose GMVAE cluster probability
:math:`q(y=i|x)` (``model_clusters.ptc`` of the export) is at least 0.9. A run starts in the origin
and stops when a sampled frame lies in the target ("commits" to it: core sets, not a dividing line,
so that recrossings of the barrier do not end a run). ``double-well`` is a toy system
(:class:`gmvae_cv.systems.toy_rates.DoubleWell`, states ``left``/``right``) with an exact answer,
for tests and for trying the machinery without OpenMM.

The transition state must stay free of bias: the bias each run felt at its last frame before the
target (``bias_at_crossing``) is recorded, and :func:`summarize_rates` warns
(:class:`InfrequentMetadWarning`) when its median exceeds ``kT``: the rate then depends on the pace.
"""

from .dispatch import _manifest, connect, run_rates  # noqa: F401  (_manifest, connect: tests and callers)
from .one_run import run_one  # noqa: F401  (the Dask task)
from .settings import CLUSTER_COMMIT, RATES_FORMAT, RUN_FORMAT, SYSTEMS, InfrequentMetadWarning, RateSettings  # noqa: F401
from .states import AlanineStates as _AlanineStates  # noqa: F401  (the names these had in one module)
from .states import alanine_start as _alanine_start  # noqa: F401
from .states import check_states  # noqa: F401
from .states import exp_cluster_probs as _exp_cluster_probs  # noqa: F401
from .summary import summarize_rates

__all__ = ["RateSettings", "run_rates", "summarize_rates", "InfrequentMetadWarning", "RATES_FORMAT", "SYSTEMS"]
