"""Red-team findings on D33/D34/D36, each shown on real stores and keys (see the commit messages):

- under a DP permit, FedAvg's local step must do the same work whatever the centre's rows (a
  mini-batch step per row is a timing channel on n, ~ms per patient and round);
- the fixed-point update that is noised must lie in the C-ball the sensitivity 2C assumes;
- no signed audit head names an entry committed without waiting for the disk, whatever the
  interleaving of two logs on one store;
- an approval racing a revocation never brings a revoked permit back.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from node_fed_helpers import make_fed, query_body, signed

from oncofed import dictionary as dictmod
from oncofed.analyses import fedavg, parse_analysis
from oncofed.analyses.fedavg import ANALYSIS as FEDAVG
from oncofed.analyses.fedavg import FedAvgRaw, clip
from oncofed.keys.identity import Identity
from oncofed.node.audit import AuditError, AuditLog
from oncofed.node.node import Node, init_node, open_node
from oncofed.node.query.engine import answer
from oncofed.node.query.policy import NodePolicy
from oncofed.node.store import db as dbmod
from oncofed.node.trust import NodeTrust
from oncofed.node.verify import QueryVerifier, RequestRefused
from oncofed.query.errors import QueryError
from oncofed.query.textform import analysis_from, cohort_from
from oncofed.synth import write_all
from oncofed.v1 import query_pb2 as pb

D = dictmod.load()
MODEL = {"outcome": "her2", "positive": ["pos"], "covariates": ["age_at_incidence", "stage_summary"],
         "clip_norm": 0.5, "learning_rate": 2.0, "local_epochs": 3}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    base = tmp_path_factory.mktemp("redteam")
    made = write_all(base / "csv", 1, 1200, 5, D)
    n = open_node(init_node(base / "centre-a", "centre-a").root)
    n.ingest(made[0].path)
    yield n
    n.close()


class DpPermit:
    permit_id, min_cell_count, epsilon, allow_exact_dates = "p-dp", 5, 1000.0, False
    allowed_analyses = ("fedavg",)
    allowed_fields = ("her2", "age_at_incidence", "stage_summary", "sex")
    allowed_outcomes: tuple[str, ...] = ()


def _body(cohort: Any, **model: Any) -> pb.QueryBody:
    body = pb.QueryBody()
    body.dictionary.name, body.dictionary.version = D.name, D.version
    body.dictionary.extension_sha256 = D.extension_sha256
    body.analysis.CopyFrom(analysis_from({"fedavg": {**MODEL, **model, "round": 1}}, "analysis"))
    if cohort is not None:
        body.cohort.CopyFrom(cohort_from(cohort, "cohort"))
    body.epsilon = 1.0
    return body


# ---------------------------------------------------------------------- D36: timing under DP
@pytest.mark.parametrize("batch_size", [0, 1, 16])
def test_under_dp_the_local_step_does_the_same_work_whatever_the_rows(node: Node, batch_size: int,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows' number is what DP hides (n is not released under DP): the count of gradient
    evaluations of the local step must not depend on it, or the round's latency — which the
    coordinator sees per centre — tells n, and two cohorts one patient apart tell membership.
    Either the spec is refused before anything is read or charged, or the work is the same."""
    steps: list[int] = []
    real = fedavg._sigmoid

    def counted(eta: Any) -> Any:
        steps.append(1)
        return real(eta)

    monkeypatch.setattr(fedavg, "_sigmoid", counted)
    work: list[object] = []
    for cohort in (None, {"field": "sex", "equals": "1"}):
        steps.clear()
        try:
            ans = answer(node, _body(cohort, batch_size=batch_size), DpPermit(), policy=NodePolicy())
        except QueryError as exc:
            work.append(("refused", exc.path))
            continue
        assert ans.meta["mode"] == "dp"
        work.append(len(steps))
    assert work[0] == work[1], work


# ---------------------------------------------------------------------- D36: C on the noised vector
def test_the_noised_fixed_point_update_lies_in_the_clip_ball() -> None:
    """dp_blocks declares L2 sensitivity 2C·2^s, i.e. every released fixed-point vector within
    C·2^s of 0; rounding each coordinate after the clip can leave that ball (by up to √p/2)."""
    s = parse_analysis(analysis_from({"fedavg": MODEL}, "analysis"), D)
    scale = 1 << s.scale_bits
    bound = Fraction(s.clip_norm) * scale
    rng = np.random.default_rng(7)
    worst = Fraction(0)
    for _ in range(200):
        update = clip(rng.normal(size=s.p), s.clip_norm)
        (block,) = FEDAVG.dp_blocks(s, FedAvgRaw(n=100, correct=0, loglik=0.0, update=update), 1)
        norm2 = sum(Fraction(x) ** 2 for x in block.data)
        worst = max(worst, norm2)
        assert 2 * bound <= block.l2
    assert worst <= bound ** 2, f"‖q‖ − C·2^s = {math.sqrt(worst) - float(bound):.3f} units"


# ---------------------------------------------------------------------- D34: heads and the disk
def _logs(tmp_path: Path) -> tuple[Node, AuditLog, AuditLog]:
    node = open_node(init_node(tmp_path / "node", "centre-a").root)
    ident = Identity.generate("centre", "centre-a")
    return node, AuditLog.open(node.paths.store, ident), AuditLog.open(node.paths.store, ident)


def test_an_audit_entry_never_commits_without_waiting_for_the_disk(tmp_path: Path) -> None:
    """A signed head may name the newest entry the moment it commits (another thread's, the admin
    API's), so an entry a power loss could take must never be written: appending inside a
    transaction that commits unsynced (a rate-limit event's, a pending query's) is refused and
    leaves the log as it was — D34's first form wrote the connector's answer entry that way and
    needed a sync before every head (D37: two interleavings got that wrong)."""
    node, connector, admin = _logs(tmp_path)
    try:
        connector.append(event="admin.note", decision="recorded", who="admin")
        before = admin.head()
        with pytest.raises(AuditError, match="synchronous=FULL"), dbmod.immediate_unsynced(connector.conn):
            connector.append(event="query.answer", decision="answered", who="res-1")
        assert admin.head() == before and len(admin.entries()) == 1
        entry = connector.append(event="query.answer", decision="answered", who="res-1")   # FULL again after it
        assert admin.head() == (entry.seq, entry.entry_hash)
        assert connector.verify().ok
    finally:
        connector.close()
        admin.close()
        node.close()


# ---------------------------------------------------------------------- trust: approve vs revoke
def test_an_approval_racing_a_revocation_does_not_bring_the_permit_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two admin processes: one approves a refused permit while the other revokes it (final). The
    approval's status check ran before its write transaction, so its UPDATE overwrote 'revoked'."""
    fed = make_fed(tmp_path / "fed")
    node = open_node(init_node(tmp_path / "node", "centre-a").root)
    approver = fed.attach(node.paths.store, "centre-a")
    revoker = NodeTrust.open(node.paths.store, "centre-a")
    verifier = QueryVerifier.for_node(node)
    try:
        sha = fed.permit(approver, approve=False)
        approver.refuse(sha, by="admin-1", reason="needs a look")
        real = NodeTrust.permit
        calls: list[int] = []

        def racing(self: NodeTrust, ref: str) -> Any:
            rec = real(self, ref)
            if self is approver and rec.status == "refused":
                calls.append(1)
                if len(calls) == 2:               # _decide's own check has passed: the other admin revokes
                    revoker.revoke(sha, by="admin-2", reason="project stopped")
            return rec

        monkeypatch.setattr(NodeTrust, "permit", racing)
        with contextlib.suppress(Exception):      # refusing the approval is the right outcome
            approver.approve(sha, by="admin-1")
        monkeypatch.setattr(NodeTrust, "permit", real)
        assert revoker.permit(sha).status == "revoked"
        with pytest.raises(RequestRefused):
            verifier.verify(signed(fed.identities["res-1"], query_body(sha)))
    finally:
        verifier.close()
        revoker.close()
        approver.close()
        node.close()


# ---------------------------------------------------------------------- D36 without DP: `correct` is a step
class ExactPermit:
    permit_id, min_cell_count, epsilon, allow_exact_dates = "p-exact", 10, None, False
    allowed_analyses = ("fedavg",)
    allowed_fields = ("her2", "age_at_incidence")
    allowed_outcomes: tuple[str, ...] = ()


def _round(t: int, round_: int) -> pb.QueryBody:
    """A FedAvg round at β whose linear predictor crosses 0 between ages t − 1 and t — with a
    slope of 1/4 per year, well inside D30's bound (|η| ≤ 30 over 0 … 120)."""
    sb = 16
    beta = [round(-0.25 * (t - 0.5) * (1 << sb)), round(0.25 * (1 << sb))]
    body = pb.QueryBody()
    body.dictionary.name, body.dictionary.version = D.name, D.version
    body.dictionary.extension_sha256 = D.extension_sha256
    body.analysis.CopyFrom(analysis_from({"fedavg": {"outcome": "her2", "positive": ["pos"],
                                                     "covariates": ["age_at_incidence"], "beta_scale_bits": sb,
                                                     "beta": beta, "round": round_}}, "analysis"))
    return body


def test_two_exact_fedavg_rounds_do_not_tell_a_cell_below_k(node: Node) -> None:
    """D30 keeps every smooth function of a round within a kernel years wide; FedAvg's `correct`
    (rows with η ≥ 0 that are positive, plus rows with η < 0 that are not) is a step at η = 0 for
    any slope. Two rounds at thresholds t and t + 1 differ by #(age t, positive) − #(age t, not):
    for a cell of fewer than k rows (one patient: that patient's outcome), exactly."""
    from oncofed.analyses.logistic import outcome
    from oncofed.node.query.compiler import compile_cohort
    from oncofed.node.store.cohort_reads import StoreReader

    spec = parse_analysis(_round(30, 1).analysis, D)
    cohort = compile_cohort(None, D, None)
    rows = StoreReader(node.conn, D, cohort.where, cohort.params, cohort.fields).design(spec.question)
    ages, y = rows.values[:, 0], outcome(spec.model, rows)
    small = [t for t in range(1, 119) if 0 < int(np.sum(ages == t)) < ExactPermit.min_cell_count]
    assert small, "the synthetic store has a cell below k"
    t = small[0]
    truth = int(np.sum((ages == t) & (y > 0.5))) - int(np.sum((ages == t) & (y < 0.5)))
    got = []
    for i, threshold in enumerate((t, t + 1)):
        ans = answer(node, _round(threshold, i + 1), ExactPermit(), policy=NodePolicy())
        assert ans.vector[-1] == 0, ans.meta                     # not withheld: the gates passed
        this = parse_analysis(_round(threshold, i + 1).analysis, D)
        result = FEDAVG.finalise(this, ans.vector[:this.n_values], {"centres": 1, "withheld": 0})
        got.append(float(result["correct"]))                     # in rows
    leaked = got[0] - got[1]
    assert abs(leaked - truth) >= 0.5, (f"age {t}: {int(np.sum(ages == t))} row(s) (< k = "
                                        f"{ExactPermit.min_cell_count}); two rounds give #positive − #negative = "
                                        f"{leaked:g}, exactly")
