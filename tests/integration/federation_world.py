"""A whole federation on 127.0.0.1 for end-to-end tests: an authority, a hub (real gRPC server,
mutual TLS), centres with real node stores and outbound connectors, and a researcher's client.
Keys, certificates, registry and permits are made at test time; data by the seeded generator."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node_fed_helpers import Fed, make_fed

from oncofed import dictionary as dictmod
from oncofed.federation.client.client import FederationClient
from oncofed.federation.hub.config import HubConfig
from oncofed.federation.hub.server import HubServer, start_hub
from oncofed.keys.keystore import save_identity
from oncofed.keys.member import MemberCredentials, load_member_credentials
from oncofed.keys.tls import load_tls_files
from oncofed.node.answering import AnsweringPipeline
from oncofed.node.connector import Connector, HubLink
from oncofed.node.node import Node, init_node, open_node
from oncofed.node.query.policy import NodePolicy
from oncofed.node.verify import QueryVerifier
from oncofed.query.textform import analysis_from, cohort_from
from oncofed.synth import write_all
from oncofed.v1 import common_pb2
from oncofed.v1 import query_pb2 as pb

FIELDS = ["sex", "topography", "stage_summary", "her2", "er", "age_at_incidence"]
ANALYSES = ["count", "crosstab", "summary", "histogram", "kaplan_meier", "logrank", "logistic", "cox", "poisson",
            "cox_pooled", "fedavg"]


@dataclass
class Centre:
    centre_id: str
    node: Node
    pipeline: AnsweringPipeline
    connector: Connector | None = None
    permit: str = ""

    def start(self, fed: Fed, target: str) -> None:
        identity = fed.identities[self.centre_id]
        tls = load_tls_files(fed.cert_path("centre", self.centre_id), fed.tls_keys[self.centre_id],
                             fed.directory / "root.cert.pem")
        self.connector = Connector(self.pipeline, identity, tls, HubLink(target), min_participants=2).start()

    def stop(self) -> None:
        if self.connector is not None:
            self.connector.stop()
            self.connector = None


@dataclass
class World:
    base: Path
    fed: Fed
    hub_config: HubConfig
    centres: dict[str, Centre]
    researcher: MemberCredentials
    hub: HubServer | None = None
    clients: list[FederationClient] = field(default_factory=list)
    extension: Path | None = None
    keys: dict[str, Path] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.hub_config.port}"

    def start_hub(self) -> HubServer:
        self.hub = start_hub(self.hub_config)
        if self.hub_config.port == 0:                 # keep the port across restarts
            self.hub_config = HubConfig(**{**self.hub_config.__dict__, "port": self.hub.port})
        return self.hub

    def stop_hub(self) -> None:
        if self.hub is not None:
            self.hub.stop(grace=1)
            self.hub = None

    def client(self) -> FederationClient:
        c = FederationClient.connect(self.researcher, self.target)
        self.clients.append(c)
        return c

    def wait_connected(self, timeout: float = 20, centres: tuple[str, ...] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for c in (self.centres[cid] for cid in centres or tuple(self.centres)):
            assert c.connector is not None
            assert c.connector.connected.wait(max(deadline - time.monotonic(), 0.1)), f"{c.centre_id} not connected"

    def dictionary(self) -> dictmod.Dictionary:
        return dictmod.load(self.extension)

    def body(self, analysis: Any, *, cohort: Any = None, targets: tuple[str, ...] | None = None,
             min_participants: int = 0) -> pb.QueryBody:
        d = self.dictionary()
        targets = targets or tuple(self.centres)
        permits = {self.centres[t].permit for t in targets}
        assert len(permits) == 1, "one permit for all targets"
        body = pb.QueryBody(permit_hash=bytes.fromhex(permits.pop()), target_centres=list(targets),
                            min_participants=min_participants or len(targets),
                            dictionary=common_pb2.DictionaryRef(name=d.name, version=d.version,
                                                                extension_sha256=d.extension_sha256))
        body.analysis.CopyFrom(analysis_from(analysis, "analysis"))
        if cohort is not None:
            body.cohort.CopyFrom(cohort_from(cohort, "cohort"))
        return body

    def close(self) -> None:
        for c in self.clients:
            c.close()
        for centre in self.centres.values():
            centre.stop()
            centre.pipeline.verifier.close()
            centre.node.close()
        self.stop_hub()


def make_world(base: Path, *, centres: tuple[str, ...] = ("centre-a", "centre-b", "centre-c"),
               patients: int = 300, policy: NodePolicy | None = None, seed: int = 20261202,
               prepare_seconds: int = 10, answer_seconds: int = 20, extension: Path | None = None,
               files: list[Path] | None = None, fields: list[str] | None = None,
               node_cache: Path | None = None) -> World:
    """Everything up and approved, nothing started: call `start_hub` and each centre's `start`.
    `files` (one CSV per centre, for `extension`'s dictionary) replace the synthetic data.
    `node_cache` (the benchmarks'): a directory keeping each centre's generated file and its
    loaded node (before any trust state) per (centre, patients, seed), copied into later worlds
    instead of generated and ingested again — at 10^6 rows a copy takes a second, a load a minute."""
    fed = make_fed(base, centres=centres, researchers=("res-1",))
    fed.enroll("hub", "hub")
    fed.authority.publish()
    (base / "root.cert.pem").write_bytes(fed.root_pem)
    keys = {}
    for member in ("hub", "res-1"):
        folder = base / f"identity-{member}"
        folder.mkdir()
        keys[member] = save_identity(fed.identities[member], folder)[0]
    policy = policy or NodePolicy(mode="threshold", min_cell_count=1, rate_per_minute=10_000, rate_per_day=100_000,
                                  allow_pooled_cox=True)
    d = dictmod.load(extension)
    # The generator models at most 26 distinct centres; a larger federation reuses their extracts.
    from oncofed.synth import MAX_CENTRES

    if files:
        paths = list(files)
    elif node_cache is not None:
        paths = cached_files(node_cache, len(centres), patients, seed, d)
    else:
        made = write_all(base / "csv", min(len(centres), MAX_CENTRES), patients, seed, d)
        paths = [made[i % len(made)].path for i in range(len(centres))]
    now = int(time.time())
    _, permit_doc = fed.authority.issue_permit(
        researcher_id="res-1", project_title="Federated end-to-end tests", analyses=ANALYSES, fields=fields or FIELDS,
        outcomes=["os", "rfs"],
        min_cell_count=1, not_before=now - 60, not_after=now + 30 * 86_400)
    permit = permit_doc.sha256
    world_centres = {}
    for centre, f in zip(centres, paths, strict=True):
        if node_cache is not None and files is None and extension is None:
            node = open_node(cached_node(node_cache, centre, f, base / centre))
        else:
            node = open_node(init_node(base / centre, centre, extension=extension).root)
            node.ingest(f)
        trust = fed.attach(node.paths.store, centre)
        trust.add_permit(permit_doc.data)
        trust.approve(permit, by="test-admin")
        trust.close()
        world_centres[centre] = Centre(centre, node, AnsweringPipeline(node, QueryVerifier.for_node(node), policy),
                                       permit=permit)
    hub_config = HubConfig(hub_id="hub", host="127.0.0.1", port=0, database=base / "hub" / "hub.db",
                           prepare_seconds=prepare_seconds, answer_seconds=answer_seconds,
                           identity_key=keys["hub"], tls_key=fed.tls_keys["hub"],
                           cert=fed.cert_path("hub", "hub"), root_cert=base / "root.cert.pem",
                           root_fingerprint=fed.authority.root.fingerprint,
                           registry=fed.authority.dir / "published" / "registry.bin",
                           revocations=fed.authority.dir / "published" / "revocations.bin")
    researcher = load_member_credentials(identity_key=keys["res-1"], tls_key=fed.tls_keys["res-1"],
                                         cert=fed.cert_path("researcher", "res-1"), root_cert=base / "root.cert.pem",
                                         root_fingerprint=fed.authority.root.fingerprint)
    return World(base, fed, hub_config, world_centres, researcher, extension=extension, keys=keys)


def cached_files(cache: Path, n: int, patients: int, seed: int, d: dictmod.Dictionary) -> list[Path]:
    """The synthetic files of centres 0 … n − 1 (the generator's 26 reused beyond), each written
    once into `cache` (a centre's file depends on its index, patients and seed only)."""
    from oncofed.synth import MAX_CENTRES, centre_filename, write_all, write_centre

    folder = cache / f"csv-{patients}-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [folder / centre_filename(i) for i in range(min(n, MAX_CENTRES))]
    missing = [i for i, p in enumerate(wanted) if not p.exists()]
    if len(missing) == len(wanted) and len(wanted) > 1:
        write_all(folder, len(wanted), patients, seed, d)          # in parallel when large
    else:
        for i in missing:
            write_centre(wanted[i], i, patients, seed, d)
    return [wanted[i % len(wanted)] for i in range(n)]


def cached_node(cache: Path, centre: str, data: Path, into: Path) -> Path:
    """A node directory for `centre` holding `data`, loaded once into `cache` and copied to
    `into` (secrets, config and store: the node stays this centre's, with no trust state yet)."""
    import shutil

    kept = cache / "nodes" / f"{centre}-{data.parent.name}-{data.name}"
    if not kept.exists():
        staging = kept.with_name(kept.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        node = open_node(init_node(staging, centre).root)
        try:
            node.ingest(data)
        finally:
            node.close()
        staging.rename(kept)
    shutil.copytree(kept, into, symlinks=True)
    return into
