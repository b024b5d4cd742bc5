"""drdd_edu: residual denoising diffusion (RDDM, DRDD) for image restoration, small and verified.

Modules (one job each):

* :mod:`drdd_edu.schedules` — α/β² coefficient schedules, the DDIM conversion;
* :mod:`drdd_edu.diffusion` — forward processes (RDDM, DRDD stages) and prediction conversions;
* :mod:`drdd_edu.samplers` — the reverse step, sampling loops, DRDD's two-stage sampler, removal paths;
* :mod:`drdd_edu.predictors` — closed-form (oracle and dataset-optimal) predictors for checks;
* :mod:`drdd_edu.toydata` — small seeded toy data sets for the notebooks.
"""

from .diffusion import q_sample, q_sample_noise_stage, q_sample_residual_stage
from .samplers import rddm_step, sample, sample_drdd, timestep_pairs
from .schedules import Schedule, ddim_converted_schedule, rddm_schedule

__version__ = "0.1.0"

__all__ = [
    "Schedule",
    "rddm_schedule",
    "ddim_converted_schedule",
    "q_sample",
    "q_sample_noise_stage",
    "q_sample_residual_stage",
    "timestep_pairs",
    "rddm_step",
    "sample",
    "sample_drdd",
    "__version__",
]
