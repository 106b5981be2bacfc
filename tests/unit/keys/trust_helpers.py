"""Builders for the trust tests: a real federation (root CA, enrolled members, published
documents) and real node stores, all in tmp_path. Not fixtures, so any test module can call them
without a shared conftest."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from oncofed.keys.authority import Authority
from oncofed.keys.enrolment import make_request
from oncofed.keys.identity import Identity
from oncofed.keys.tls import new_member_tls_key
from oncofed.node.store import db as dbmod
from oncofed.node.trust import NodeTrust

ROOT_PASSPHRASE = b"test root passphrase"
DAY = 86_400


def request_for(identity: Identity, directory: Path) -> bytes:
    _, csr = new_member_tls_key(directory, identity.role, identity.member_id)
    return make_request(identity, csr.read_bytes(), int(time.time()))


@dataclass
class Federation:
    directory: Path
    authority: Authority
    members: dict[str, Identity] = field(default_factory=dict)

    @property
    def cert(self) -> bytes:
        return self.authority.root_cert_pem

    @property
    def fingerprint(self) -> str:
        return self.authority.root.fingerprint

    def enroll(self, role: str, member_id: str) -> Identity:
        ident = Identity.generate(role, member_id)
        n = len(list(self.directory.glob("member-*")))
        self.authority.enroll(request_for(ident, self.directory / f"member-{n}"), role)
        self.members[member_id] = ident
        return ident

    def published(self, name: str) -> bytes:
        return (self.directory / "auth" / "published" / name).read_bytes()

    def permit(self, **over: object) -> tuple[bytes, str]:
        now = int(time.time())
        args: dict[str, object] = {
            "researcher_id": "res-1", "project_title": "Survival by sex",
            "analyses": ["count", "kaplan_meier"], "fields": ["sex", "incidence_date"], "outcomes": ["os"],
            "min_cell_count": 10, "not_before": now - 60, "not_after": now + 30 * DAY}
        args.update(over)
        _, signed = self.authority.issue_permit(**args)  # type: ignore[arg-type]
        return signed.data, signed.sha256


def make_federation(tmp_path: Path, *, name: str = "fed") -> Federation:
    """A root with two centres and one researcher enrolled and registry v1 published."""
    directory = tmp_path / name
    auth = Authority.create(directory / "auth", ROOT_PASSPHRASE, federation="test-federation")
    fed = Federation(directory, auth)
    fed.enroll("centre", "centre-a")
    fed.enroll("centre", "centre-b")
    fed.enroll("researcher", "res-1")
    auth.publish()
    return fed


def make_node(tmp_path: Path, fed: Federation | None = None, centre: str = "centre-a",
              *, install: bool = True) -> NodeTrust:
    """A node store with the trust tables; pinned to `fed`'s root and current documents."""
    store = tmp_path / f"{centre}-{time.monotonic_ns()}.sqlite"
    db = dbmod.connect(store, create=True)
    dbmod.migrate(db, ["trust"])
    trust = NodeTrust(db, centre)
    if fed is not None:
        trust.pin_root(fed.cert, fed.fingerprint)
        if install:
            trust.update_registry(fed.published("registry.bin"))
            trust.update_revocations(fed.published("revocations.bin"))
    return trust
