"""The differencing attacks of issue 8, as a researcher would run them against a real node.

A target is a tumour whose combination of sex, age, incidence month and topography is unique in
the centre's store (U). The researcher knows U and wants an attribute the permit lets them
tabulate but that they do not know:

- **crosstab**: crosstab(stage) over C and over C ∧ ¬U: the one cell that changed is the stage;
- **count**: for each stage level ℓ, count(C ∧ ℓ) and count(C ∧ ℓ ∧ ¬U): the level whose count
  changed is the stage;
- **summary**: summary(tumour size) over C and over C ∧ ¬U: the difference of Σx is the size.

When nothing changed, the attacker guesses the most common level (value) — the baseline any
attacker reaches without asking. Plain functions over an `ask(cohort, analysis) -> (vector,
result)` callable, so the same attack runs through the answering pipeline of this code, of an
older checkout (bench/differencing.py), or around the release ledger (the controls).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Ask = Callable[[dict[str, Any] | None, Any], tuple[list[int], dict[str, Any]]]
FIELDS = ("sex", "age_at_incidence", "incidence_date", "topography")


@dataclass(frozen=True)
class Outcome:
    kind: str
    targets: int
    successes: int
    baseline: int          # successes of always guessing the most common level
    unchanged: int         # targets for which every second answer equalled the first, byte for byte

    @property
    def rate(self) -> float:
        return self.successes / self.targets

    @property
    def baseline_rate(self) -> float:
        return self.baseline / self.targets

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "targets": self.targets, "success_rate": round(self.rate, 4),
                "most_common_guess_rate": round(self.baseline_rate, 4), "unchanged_answers": self.unchanged}


def combination(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["sex"], row["age_at_incidence"], row["incidence_date"][:7], row["topography"])


Row = dict[str, Any]


def unique_targets(rows: Sequence[Row], n: int, keep: Callable[[Row], bool]) -> list[Row]:
    """n tumours (spread over the store, deterministic) whose combination U is unique in it."""
    counts = Counter(map(combination, rows))
    pool = sorted((r for r in rows if counts[combination(r)] == 1 and keep(r)), key=combination)
    if len(pool) < n:
        raise ValueError(f"only {len(pool)} unique targets")
    step = len(pool) / n
    return [pool[int(i * step)] for i in range(n)]


def u_of(row: dict[str, Any]) -> dict[str, Any]:
    """The cohort node selecting the target's unique combination (month precision)."""
    return {"and": [{"field": "sex", "equals": row["sex"]},
                    {"field": "age_at_incidence", "equals": row["age_at_incidence"]},
                    {"field": "incidence_date", "equals": row["incidence_date"][:7]},
                    {"field": "topography", "equals": row["topography"]}]}


def _and(*parts: dict[str, Any] | None) -> dict[str, Any] | None:
    items = [p for p in parts if p is not None]
    return None if not items else items[0] if len(items) == 1 else {"and": items}


def crosstab_attack(ask: Ask, cohort: dict[str, Any] | None, targets: Sequence[dict[str, Any]], field: str,
                    mode_level: str) -> Outcome:
    analysis = {"crosstab": {"fields": [field]}}
    wins = base = same = 0
    for t in targets:
        v1, r1 = ask(cohort, analysis)
        v2, r2 = ask(_and(cohort, {"not": u_of(t)}), analysis)
        before = {c["levels"][field]: c["count"] for c in r1["cells"]}
        after = {c["levels"][field]: c["count"] for c in r2["cells"]}
        drops = {lv: before[lv] - after[lv] for lv in before if before[lv] != after[lv]}
        guess = max(drops, key=lambda lv: (drops[lv], lv)) if drops else mode_level
        truth = t[field] or "(missing)"
        wins += guess == truth
        base += mode_level == truth
        same += v1 == v2
    return Outcome("crosstab", len(targets), wins, base, same)


def padded_crosstab_attack(ask: Ask, cohort: dict[str, Any] | None, targets: Sequence[dict[str, Any]], field: str,
                           pads: Sequence[dict[str, Any]], pad_level: str) -> Outcome:
    """The crosstab attack with the second cohort padded by rows P of a known level (one pad per
    target, each a cohort node selecting ≥ 2k rows, all of `pad_level`, disjoint from the others so
    the padded cohorts are far from each other too): C and C ∧ ¬U ∧ ¬P differ in more than the
    ledger's radius, yet every cell but P's is unchanged unless it holds the target. A known limit
    of a ledger of whole row sets (docs/security.md, "Differencing"); the guess when no other cell
    changed is the pad's level."""
    analysis = {"crosstab": {"fields": [field]}}
    wins = base = same = 0
    for t, pad in zip(targets, pads, strict=True):
        v1, r1 = ask(cohort, analysis)
        v2, r2 = ask(_and(cohort, {"not": u_of(t)}, {"not": pad}), analysis)
        before = {c["levels"][field]: c["count"] for c in r1["cells"]}
        after = {c["levels"][field]: c["count"] for c in r2["cells"]}
        drops = {lv: before[lv] - after[lv] for lv in before if lv != pad_level and before[lv] != after[lv]}
        guess = max(drops, key=lambda lv: (drops[lv], lv)) if drops else pad_level
        truth = t[field] or "(missing)"
        wins += guess == truth
        base += pad_level == truth
        same += v1 == v2
    return Outcome("crosstab_padded", len(targets), wins, base, same)


def count_attack(ask: Ask, cohort: dict[str, Any] | None, targets: Sequence[dict[str, Any]], field: str,
                 levels: Sequence[str], mode_level: str) -> Outcome:
    wins = base = same = 0
    for t in targets:
        guess, all_same = mode_level, True
        for level in levels:
            c = _and(cohort, {"field": field, "equals": level})
            v1, r1 = ask(c, "count")
            v2, r2 = ask(_and(c, {"not": u_of(t)}), "count")
            all_same &= v1 == v2
            if r1["count"] != r2["count"]:
                guess = level
                break
        truth = t[field] or "(missing)"
        wins += guess == truth
        base += mode_level == truth
        same += all_same
    return Outcome("count", len(targets), wins, base, same)


def summary_attack(ask: Ask, cohort: dict[str, Any] | None, targets: Sequence[dict[str, Any]], field: str,
                   mode_value: int, scale_bits: int = 0) -> Outcome:
    analysis = {"summary": {"field": field, "scale_bits": scale_bits}}
    wins = base = same = 0
    for t in targets:
        v1, _ = ask(cohort, analysis)
        v2, _ = ask(_and(cohort, {"not": u_of(t)}), analysis)
        diff = _signed(v1[1]) - _signed(v2[1])           # Σx·2^s, as released
        guess = round(diff / 2**scale_bits) if diff else mode_value
        wins += guess == t[field]
        base += mode_value == t[field]
        same += v1 == v2
    return Outcome("summary", len(targets), wins, base, same)


def _signed(v: int) -> int:
    return v - (1 << 128) if v >= 1 << 127 else v
