"""Kaplan–Meier curves as a PNG: one step curve per group, its confidence band, and the numbers
at risk under the axis — the figure a survival paper shows. Needs matplotlib (`oncofed[plot]`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oncofed.errors import UsageError

MAX_TICKS = 6


def plot_kaplan_meier(result: dict[str, Any], out: Path) -> Path:
    if result.get("analysis") != "kaplan_meier":
        raise UsageError("--plot draws Kaplan–Meier curves; this query is not a kaplan_meier analysis")
    try:
        import matplotlib

        matplotlib.use("Agg")            # no screen: write files only
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'oncofed[plot]'") from None
    curves = result["curves"]
    fig, (ax, table) = plt.subplots(2, 1, figsize=(8, 6), height_ratios=[4, 1], sharex=True)
    horizon = max((p["time"] for c in curves.values() for p in c["points"]), default=0)
    ticks = [round(horizon * i / (MAX_TICKS - 1)) for i in range(MAX_TICKS)] if horizon else [0]
    for row, (group, curve) in enumerate(curves.items()):
        pts = curve["points"]
        t = [p["time"] for p in pts]
        label = f"{result['group_by']} = {group}" if result.get("group_by") else "all"
        line = ax.step(t, [p["survival"] for p in pts], where="post", label=label)[0]
        ax.fill_between(t, [p["ci_lower"] for p in pts], [p["ci_upper"] for p in pts], step="post",
                        alpha=0.15, color=line.get_color())
        at_risk = [next((p["at_risk"] for p in pts if p["time"] >= x), 0) for x in ticks]
        for x, n in zip(ticks, at_risk, strict=True):
            table.text(x, row, str(n), ha="center", va="center", fontsize=8, color=line.get_color())
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("survival")
    ax.set_title(f"{result['outcome']} to {result['cutoff']} ({result['estimator']}, "
                 f"{int(result['ci']['level'] * 100)} % CI {result['ci']['transform']}); "
                 f"{result['centres']} centres")
    ax.legend(loc="lower left", fontsize=8)
    table.set_yticks(range(len(curves)), [str(g) for g in curves], fontsize=8)
    table.set_ylim(-0.5, len(curves) - 0.5)
    table.invert_yaxis()
    table.set_xticks(ticks)
    table.set_xlabel("days; numbers at risk at each tick")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
