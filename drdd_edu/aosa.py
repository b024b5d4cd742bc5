"""AOSA: RDDM's automatic objective selection between SM-Res and SM-N (RDDM §3.3).

One network with a single 3-channel output o is trained with the objective ``auto_res_noise``
(:class:`~drdd_edu.train.TrainConfig`): a learnable scalar λ ∈ [0, 1], initialised at 0.5 and
trained by the same optimiser, mixes the two readings of the same output,

    L(θ, λ) = λ·L_res + (1 − λ)·L_ε,   L_res = L(o, I_res),   L_ε = L(o, ε),

where I_res = I_in − I_0 (R0), ε is the noise in I_t (R2) and L is L1 or L2.

Why λ moves toward the easier objective. The gradient of the loss with respect to λ is

    ∂L/∂λ = L_res − L_ε,

so gradient descent *raises* λ when L_res < L_ε (the output is closer to the residual than to
the noise) and lowers it otherwise; the clamp keeps λ in [0, 1]. λ therefore drifts toward the
reading the network can fit better — the objective with the smaller loss — and once
|λ − 0.5| ≥ 0.01 RDDM stops and decides: λ > 0.5 → ``pred_res`` (SM-Res), else ``pred_noise``
(SM-N). Training then restarts with fresh weights and the chosen objective alone.

What this means:

* **Restoration** (I_in = a degraded image): I_res is the (usually small, structured) difference
  between the input and the clean image, and the network sees I_in, so it can predict I_res
  far more accurately than the white noise ε; L_res < L_ε and λ rises → SM-Res, which is also
  what RDDM reports for restoration (predicting the residual keeps the output close to I_in).
* **Generation** (I_in = 0, I_res = −I_0): predicting the residual means predicting a whole
  clean image from a noisy state, which at large t is hopeless (the MMSE guess is a blurry
  mean), whereas ε is well determined by I_t when the noise dominates; L_ε < L_res and λ falls
  → SM-N, the classic DDPM/DDIM ε-prediction. RDDM reports exactly this split.

Both readings need a schedule where SM-N can restore: with the RDDM restoration schedule
ᾱ_{T−1} = 1 and I_t holds no information about I_0, so AOSA runs use ``schedule = "ddim"``
(:func:`~drdd_edu.schedules.ddim_converted_schedule`, ᾱ_{T−1} ≈ 0.994), and the config refuses
``auto_res_noise`` with ``schedule = "rddm"``.

The RDDM reference code overwrites the chosen objective by mistake; here the choice is kept and
returned (:class:`AOSASelection`) and the second run uses it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .train import TrainConfig, Trainer

__all__ = ["AOSASelection", "select_objective", "train_aosa"]


@dataclass
class AOSASelection:
    """The outcome of an AOSA selection run.

    Attributes:
        choice: ``"pred_res"`` if λ ended above 0.5, else ``"pred_noise"``.
        lambda_final: λ at the last step run.
        decided_at_step: the step (1-based count of optimiser steps) at which |λ − 0.5| first
            reached the threshold, or ``max_steps`` if it never did.
        decided: whether the threshold was reached (False: ``choice`` is only λ's side).
        lambda_history: ``(step, λ)`` after every step, step = 1 … decided_at_step.
        threshold: the decision threshold on |λ − 0.5|.
    """

    choice: str
    lambda_final: float
    decided_at_step: int
    decided: bool = True
    lambda_history: list[tuple[int, float]] = field(default_factory=list)
    threshold: float = 0.01

    def to_dict(self) -> dict[str, object]:
        """JSON-compatible dict (the history as ``[step, λ]`` pairs)."""
        d = asdict(self)
        d["lambda_history"] = [[s, v] for s, v in self.lambda_history]
        return d


def _selection_config(config: TrainConfig, max_steps: int, progress: bool) -> TrainConfig:
    """The config of the selection run: ``auto_res_noise``, ``max_steps``, nothing written."""
    if config.stage != "rddm":
        raise ValueError(
            f"AOSA chooses between SM-Res and SM-N of the coupled RDDM process: the config "
            f"needs stage = 'rddm' (got {config.stage!r})"
        )
    return config.replace(
        objective="auto_res_noise",
        two_networks=False,
        steps=max_steps,
        eval_every=0,
        out_dir="",
        name=f"{config.name}-aosa-select",
        progress=progress,
    )


def select_objective(
    config: TrainConfig,
    max_steps: int = 2000,
    threshold: float = 0.01,
    progress: bool = True,
) -> AOSASelection:
    """Train one ``auto_res_noise`` network until |λ − 0.5| ≥ ``threshold`` (RDDM's rule) or
    ``max_steps`` optimiser steps, and read off the objective.

    Args:
        config: a stage-``rddm`` config with ``schedule = "ddim"`` (its ``objective``,
            ``steps``, ``eval_every`` and ``out_dir`` are replaced; the selection writes no
            files). Everything else — data, ``tasks``, ``generation``, lr, seed — is used as is.
        max_steps: the most optimiser steps to spend (≥ 1).
        threshold: the decision margin on |λ − 0.5|, in (0, 0.5].
        progress: show a tqdm bar.

    Returns:
        An :class:`AOSASelection`; ``choice`` is ``"pred_res"`` iff λ > 0.5.
    """
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an int ≥ 1, got {max_steps!r}")
    if not (isinstance(threshold, (int, float)) and 0 < threshold <= 0.5):
        raise ValueError(f"threshold must be in (0, 0.5], got {threshold!r}")
    from tqdm.auto import tqdm

    trainer = Trainer(_selection_config(config, max_steps, progress))
    assert trainer.aosa_lambda is not None
    history: list[tuple[int, float]] = []
    decided = False
    bar = tqdm(
        total=max_steps,
        desc=f"AOSA {config.name}",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        for state in trainer.steps():
            lam = state["lambda"]
            history.append((state["step"], lam))
            bar.update(1)
            bar.set_postfix(lam=f"{lam:.4f}", refresh=False)
            if abs(lam - 0.5) >= threshold:  # RDDM's stopping rule
                decided = True
                break
    finally:
        bar.close()
        trainer.close()
    step, lam = history[-1]
    return AOSASelection(
        choice="pred_res" if lam > 0.5 else "pred_noise",
        lambda_final=lam,
        decided_at_step=step if decided else max_steps,
        decided=decided,
        lambda_history=history,
        threshold=float(threshold),
    )


def train_aosa(
    config: TrainConfig,
    max_select_steps: int = 2000,
    threshold: float = 0.01,
    progress: bool = True,
) -> tuple[AOSASelection, Trainer]:
    """AOSA end to end: :func:`select_objective`, then a fresh network (re-initialised with the
    same seed) trained with the chosen objective for ``config.steps`` steps.

    The second run uses ``config`` with ``objective`` set to the choice (λ frozen at 1 or 0,
    i.e. only that loss); it writes to ``config.out_dir`` as a normal run does, plus
    ``aosa.json`` (the selection) there.

    Returns:
        ``(selection, trainer)``: the trainer has run to the end (its ``ema`` is the model).
    """
    selection = select_objective(config, max_select_steps, threshold, progress)
    final = config.replace(objective=selection.choice, two_networks=False)
    trainer = Trainer(final.replace(progress=progress and config.progress))
    if trainer.out_dir is not None and trainer.dist.is_main:
        (trainer.out_dir / "aosa.json").write_text(json.dumps(selection.to_dict(), indent=2) + "\n")
    trainer.run()
    return selection, trainer
