"""The team report's numbers (2025-12-01), shipped with the project so nothing reads ../shared.

`team_r2(model, noise_level, params)` returns the report's test R^2 for one of our specs,
or None when the report gives no number for it. Those numbers were measured on the team's
own data set: they are displayed beside ours, never used to tune anything.
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

REPORT_FILE = Path(__file__).with_name("team_report_2025-12-01.csv")
REPORT_LABEL = "team report 2025-12-01"

# our (model, key param) -> the report's method name
METHOD_MAP = {
    "metadata_ridge": "metadata_baseline", "metadata_lgbm": "metadata_baseline",
    "ridge": "ridge", "lightgbm": "lightgbm", "residual_mlp": "residual_mlp",
    "global_mlp": "global_feature_mlp", "topk_cnn": "topk_window_cnn",
    "topk_transformer": "topk_window_transformer",
}


@lru_cache(maxsize=1)
def rows() -> list[dict]:
    with open(REPORT_FILE, newline="") as f:
        return list(csv.DictReader(f))


def team_r2(model: str, noise_level: float, params: dict | None = None) -> float | None:
    params = params or {}
    if model == "dilated_cnn":
        method = f"dilated_cnn_d{int(params.get('dilation', 2))}"
    else:
        method = METHOD_MAP.get(model)
    if not method:
        return None
    for r in rows():
        if r["method"] != method or r["metric"] != "test_r2" or not r["value"]:
            continue
        if r["noise_level"] not in ("any", f"{noise_level:g}", f"{noise_level:.1f}"):
            continue
        if model == "topk_cnn":
            k = int(params.get("K", 256))
            if f"K={k} " not in r["input"]:
                continue
        return float(r["value"])
    return None
