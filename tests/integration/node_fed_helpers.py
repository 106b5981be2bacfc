"""A real federation for node-side tests: authority with a root CA, enrolled centres and
researchers, published registry, node stores that pinned it, approved permits and signed queries.
Plain functions (not fixtures) so any test module in this folder can build one."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oncofed import dictionary as dictmod
from oncofed.keys.authority import Authority
from oncofed.keys.enrolment import make_request
from oncofed.keys.envelope import sign
from oncofed.keys.identity import Identity
from oncofed.keys.tls import new_member_tls_key
from oncofed.node.trust import NodeTrust
from oncofed.node.verify import QUERY_TAG
from oncofed.v1 import common_pb2, query_pb2

PASSPHRASE = b"node test root passphrase"
DAY = 86_400


@dataclass
class Fed:
    directory: Path
    authority: Authority
    identities: dict[str, Identity] = field(default_factory=dict)
    tls_keys: dict[str, Path] = field(default_factory=dict)

    @property
    def root_pem(self) -> bytes:
        return self.authority.root_cert_pem

    def enroll(self, role: str, member_id: str) -> Identity:
        ident = Identity.generate(role, member_id)
        key, csr = new_member_tls_key(self.directory / f"member-{member_id}", role, member_id)
        self.authority.enroll(make_request(ident, csr.read_bytes(), int(time.time())), role)
        self.identities[member_id], self.tls_keys[member_id] = ident, key
        return ident

    def cert_path(self, role: str, member_id: str) -> Path:
        return self.authority.dir / "certs" / f"{role}-{member_id}.cert.pem"

    def published(self, name: str) -> bytes:
        return (self.authority.dir / "published" / name).read_bytes()

    def attach(self, store: Path, centre_id: str) -> NodeTrust:
        """Pin the root and install the current registry and revocation list in a node store."""
        trust = NodeTrust.open(store, centre_id)
        trust.pin_root(self.root_pem, self.authority.root.fingerprint)
        trust.install(self.published("registry.bin"))
        trust.install(self.published("revocations.bin"))
        return trust

    def permit(self, trust: NodeTrust, *, approve: bool = True, **over: object) -> str:
        now = int(time.time())
        args: dict[str, object] = {
            "researcher_id": "res-1", "project_title": "Survival by sex",
            "analyses": ["count", "crosstab"], "fields": ["sex", "er", "topography"],
            "min_cell_count": 10, "not_before": now - 60, "not_after": now + 30 * DAY}
        args.update(over)
        _, signed = self.authority.issue_permit(**args)  # type: ignore[arg-type]
        trust.add_permit(signed.data)
        if approve:
            trust.approve(signed.sha256, by="test-admin")
        return signed.sha256


def make_fed(base: Path, centres: tuple[str, ...] = ("centre-a", "centre-b"),
             researchers: tuple[str, ...] = ("res-1", "res-2")) -> Fed:
    fed = Fed(base, Authority.create(base / "auth", PASSPHRASE, federation="node-tests"))
    for c in centres:
        fed.enroll("centre", c)
    for r in researchers:
        fed.enroll("researcher", r)
    fed.authority.publish()
    return fed


def query_body(permit_sha: str, *, targets: tuple[str, ...] = ("centre-a", "centre-b"),
               issued_at: int | None = None, lifetime: int = 3600,
               d: dictmod.Dictionary | None = None) -> query_pb2.QueryBody:
    """A count of breast tumours in women: fields sex and topography."""
    d = d or dictmod.load()
    issued = int(time.time()) if issued_at is None else issued_at
    body = query_pb2.QueryBody(
        permit_hash=bytes.fromhex(permit_sha), nonce=os.urandom(16), issued_at=issued,
        expires_at=issued + lifetime, target_centres=list(targets), min_participants=1,
        dictionary=common_pb2.DictionaryRef(name=d.name, version=d.version,
                                            extension_sha256=d.extension_sha256))
    both = body.cohort.all_of.items
    both.add().equals.CopyFrom(query_pb2.Equals(field="sex", value="2"))
    both.add().prefix.CopyFrom(query_pb2.Prefix(field="topography", prefix="C50"))
    body.analysis.count.SetInParent()
    return body


def signed(identity: Identity, body: query_pb2.QueryBody) -> bytes:
    return sign(identity, QUERY_TAG, body.SerializeToString())


def record_fsyncs(monkeypatch: Any) -> list[str]:
    """Every file `os.fsync` syncs from now on (its path), the sync itself still done: what the
    audit-head tests read to see that an entry reached the disk before a head named it."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced

