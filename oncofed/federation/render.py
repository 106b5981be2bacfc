"""Finalised results as text for people (the CLI's default output; `--json` prints the dict)."""

from __future__ import annotations

from typing import Any

_MAX_ROWS = 25


def render(result: dict[str, Any]) -> str:
    kind = result.get("analysis")
    head = f"{kind}  ({result.get('centres', 0)} centre(s)"
    suppressed = result.get("suppressed_centres") or result.get("moments_withheld_centres") or 0
    head += f", {suppressed} suppressed)" if suppressed else ")"
    body = {"count": _count, "crosstab": _crosstab, "histogram": _histogram, "summary": _summary,
            "kaplan_meier": _km, "logrank": _logrank}.get(str(kind), lambda r: [repr(r)])(result)
    return "\n".join([head, *body])


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _count(r: dict[str, Any]) -> list[str]:
    return [f"  count: {_num(r['count'])}"]


def _crosstab(r: dict[str, Any]) -> list[str]:
    fields = r["fields"]
    widths = [max(len(f), 9) for f in fields]
    lines = ["  " + "  ".join(f.ljust(w) for f, w in zip(fields, widths, strict=True)) + "  count"]
    for cell in r["cells"]:
        if cell["count"]:
            lv = cell["levels"]
            lines.append("  " + "  ".join(lv[f].ljust(w) for f, w in zip(fields, widths, strict=True))
                         + f"  {_num(cell['count'])}")
    lines.append(f"  total {_num(r['total'])}  (margins: {r['margins_definition']})")
    for f, m in r["margins"].items():
        lines.append(f"  {f}: " + ", ".join(f"{k} {_num(v)}" for k, v in m.items() if v))
    return lines


def _histogram(r: dict[str, Any]) -> list[str]:
    lines = [f"  {r['field']}"]
    lines += [f"  [{b['from']}, {b['to']})".ljust(16) + _num(b["count"]) for b in r["bins"]]
    lines.append("  missing".ljust(16) + _num(r["missing"]))
    return lines


def _summary(r: dict[str, Any]) -> list[str]:
    lines = [f"  {r['field']}: n {_num(r['n'])}, missing {_num(r['missing'])}",
             f"  mean {_num(r['mean'])}, variance {_num(r['variance'])}, sd {_num(r['sd'])}"]
    if r["quantiles"]:
        lines.append("  quantiles: " + ", ".join(f"{q['p']:g}: {_num(q['value'], 2)}" for q in r["quantiles"]))
        lines.append(f"  ({r['quantile_definition']})")
    return lines


def _km(r: dict[str, Any]) -> list[str]:
    lines = [f"  {r['outcome']} to {r['cutoff']}, lattice {r['step_days']} day(s), {r['estimator']}, "
             f"{int(r['ci']['level'] * 100)} % CI {r['ci']['transform']} ({r['ci']['variance']})"]
    if r.get("suppressed_groups"):
        lines.append("  withheld groups (fewer than k, possibly none): " +
                     ", ".join(f"{g} at {n} centre(s)" for g, n in r["suppressed_groups"].items()))
    for group, curve in r["curves"].items():
        label = f"{r['group_by']} = {group}" if r["group_by"] else "all"
        median = f"{curve['median']} days" if curve["median"] is not None else "not reached"
        lines.append(f"  {label}: median {median}")
        points = curve["points"]
        stride = max(1, -(-len(points) // _MAX_ROWS))
        lines.append("    to day   at risk   events  censored  S(t)    95% CI")
        for i in range(0, len(points), stride):
            window = points[i:i + stride]        # events and censorings summed over the rows not shown
            p = window[-1]
            events, censored = sum(w["events"] for w in window), sum(w["censored"] for w in window)
            lines.append(f"    {p['time']:<8} {window[0]['at_risk']:>8} {events:>8} {censored:>9}  "
                         f"{p['survival']:.4f}  [{p['ci_lower']:.4f}, {p['ci_upper']:.4f}]")
    return lines


def _logrank(r: dict[str, Any]) -> list[str]:
    lines = [f"  {r['test']}", f"  {r['outcome']} to {r['cutoff']} by {r['group_by']}: "
             f"χ² = {_num(r['statistic'])}, df = {r['df']}, p = {r['p_value']:.3g}"]
    for g in r["groups"]:
        lines.append(f"    {g}: observed {r['observed'][g]}, expected {r['expected'][g]:.2f}")
    return lines
