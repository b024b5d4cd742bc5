"""The DRDD experiments: coupled vs decoupled, data efficiency, the noise-strength sweep, coupled vs
decoupled at matched noise, and AOSA.

```python
from drdd_edu.experiments import run_experiment, load_results
res = run_experiment("coupled", size="smoke")   # rows, meta, csv/json/png paths
```

Sizes (:mod:`~drdd_edu.experiments.sizes`): ``smoke`` (CI, tiny preset at 16²), ``cpu`` (tiny
preset at 32², 1200 steps per DRDD network), ``cpu-long`` (``cpu`` with three times the
data-efficiency study's steps), ``gpu`` (the ``small`` preset at 64², minutes of one GPU) and
``full`` (the reference ``rddm`` preset at 64², batch 64, bf16, CUDA only). Networks are shared
between the experiments of a size through ``{runs_dir}/{size}/{run_name}``. Command line: ``drdd-edu experiment NAME --size S``.

Modules: ``sizes`` (settings), ``runs`` (training configs, train-or-reuse), ``evaluation``
(stratified per-task PSNR/SSIM), ``context`` (shared state and progress), ``io`` (CSV/JSON),
``coupled``, ``data_efficiency``, ``noise_sweep``, ``matched_noise``, ``aosa_exp`` (one per
experiment), ``seeds`` (mean ± std over seeds and verdicts from the spread),
``runner`` (:func:`run_experiment`).
"""

from .evaluation import drdd_restorer, evaluate_per_task, rddm_restorer, stratified_test_indices
from .io import ROW_KEYS, ExperimentResult
from .runner import EXPERIMENTS, load_results, run_experiment
from .runs import RunConfigMismatch, RunRecord, ensure_run
from .sizes import SIZES, SizeSettings, get_size

__all__ = [
    "EXPERIMENTS",
    "SIZES",
    "ROW_KEYS",
    "ExperimentResult",
    "run_experiment",
    "load_results",
    "evaluate_per_task",
    "stratified_test_indices",
    "rddm_restorer",
    "drdd_restorer",
    "RunConfigMismatch",
    "RunRecord",
    "ensure_run",
    "SizeSettings",
    "get_size",
]
