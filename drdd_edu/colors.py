"""One colour per removal order and per method, shared by every notebook and experiment figure.

A reader who learns in notebook 02 that residual-first is green must find it green in 03 and in
the path lab; a method keeps its colour from the coupled experiment to the data-efficiency one.
The degraded input (the do-nothing baseline) is always :data:`INPUT_COLOR`.
"""

from __future__ import annotations

__all__ = ["ORDER_COLORS", "ORDER_MARKERS", "METHOD_COLORS", "INPUT_COLOR"]

#: the three removal orders of :data:`drdd_edu.samplers.PATH_ORDERS` (colour-blind-safe tab10 hues)
ORDER_COLORS: dict[str, str] = {
    "simultaneous": "tab:blue",
    "residual_first": "tab:green",
    "noise_first": "tab:orange",
}
#: matplotlib format strings that keep the orders apart in greyscale print as well
ORDER_MARKERS: dict[str, str] = {
    "simultaneous": "o-",
    "residual_first": "s--",
    "noise_first": "^-.",
}
#: one colour per restoration method in every experiment figure
METHOD_COLORS: dict[str, str] = {
    "rddm": "C0",
    "drdd": "C1",
    "drdd_cond": "C2",
    "drdd_exact": "C3",
    "noise_stage_wiener": "C7",
    "noise_stage_drdd": "C5",
}
#: the degraded input I_in, the baseline in every results figure
INPUT_COLOR: str = "k"
