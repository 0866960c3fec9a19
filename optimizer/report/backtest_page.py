"""The backtest page (``backtest.html``): each method's recall with its interval, the table,
and the reliability chart of ``p_redeem`` (predicted against observed by decile)."""
from __future__ import annotations

from typing import Any

from optimizer.report import charts
from optimizer.report.page import environment


def render_backtest(info: dict[str, Any], rows: list[dict[str, Any]],
                    calibration: list[dict[str, Any]]) -> str:
    """HTML of the backtest: ``info`` (its setup and ``calibration_scores``), the table's
    ``rows`` (one per method) and the ``calibration`` deciles."""
    recall_chart = charts.interval_chart(
        [r["method"] for r in rows], [r["recall"] for r in rows],
        [r["recall_lo"] for r in rows], [r["recall_hi"] for r in rows],
        "Recall of the held-out redemptions (95% bootstrap interval over customers)",
        xlabel="recall")
    predicted = [r["predicted"] for r in calibration]
    top = max([*predicted, *(r["observed"] for r in calibration), 1e-9])
    reliability_chart = charts.line_chart(
        predicted, {"observed rate": [r["observed"] for r in calibration],
                    "perfect calibration": predicted},
        "Reliability of p_redeem (held-out sends by decile)",
        xlabel=f"mean predicted p_redeem (up to {top:.3f})", ylabel="observed redemption rate")
    return environment().get_template("backtest.html").render(
        info=info, rows=rows, calibration=calibration, scores=info["calibration_scores"],
        recall_chart=recall_chart, reliability_chart=reliability_chart)
