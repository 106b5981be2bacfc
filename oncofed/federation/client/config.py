"""The researcher's settings: where the hub is, and the researcher's own keys and the root.

    [hub]
    address = "127.0.0.1:7800"
    server_name = ""                # the name in the hub's certificate, when not the address's host

    [dictionary]
    extension = ""                  # the federation's dictionary extension file, if it has one

    [credentials]                   # from `oncofed keys new --role researcher` and the authority
    identity_key = "keys/identity.key"
    tls_key = "keys/tls-researcher-res-1.key.pem"
    cert = "certs/researcher-res-1.cert.pem"
    root_cert = "root.cert.pem"
    root_fingerprint = "…"          # pinned, read out of band from the authority

Relative paths are relative to the file's folder; `oncofed query config` writes one with every
setting. The submitted queries are listed in `queries.jsonl` beside it (metadata only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from oncofed import dictionary as dictmod
from oncofed import settings
from oncofed.dictionary import Dictionary
from oncofed.keys.member import MemberCredentials, load_member_credentials

SCHEMA: settings.Schema = {
    "hub": {"address": "127.0.0.1:7800", "server_name": ""},
    "dictionary": {"extension": ""},
    "credentials": {"identity_key": "", "tls_key": "", "cert": "", "root_cert": "", "root_fingerprint": ""},
}
TITLE = "oncofed researcher settings; see docs/federation.md"
PATHS = {("dictionary", "extension"), ("credentials", "identity_key"), ("credentials", "tls_key"),
         ("credentials", "cert"), ("credentials", "root_cert")}
PASSPHRASE_ENV = "ONCOFED_KEY_PASSPHRASE"  # noqa: S105 - a variable's name, not a secret


@dataclass(frozen=True)
class ResearcherConfig:
    path: Path
    address: str
    server_name: str | None
    identity_key: Path
    tls_key: Path
    cert: Path
    root_cert: Path
    root_fingerprint: str
    extension: Path | None = None

    def dictionary(self) -> Dictionary:
        """The federation's dictionary: the core plus its extension, as every centre runs it."""
        return dictmod.load(self.extension)

    @property
    def history(self) -> Path:
        return self.path.parent / "queries.jsonl"

    def credentials(self, passphrase: bytes | None = None) -> MemberCredentials:
        return load_member_credentials(identity_key=self.identity_key, tls_key=self.tls_key, cert=self.cert,
                                       root_cert=self.root_cert, root_fingerprint=self.root_fingerprint,
                                       passphrase=passphrase)


def render(values: dict[str, dict[str, object]] | None = None) -> str:
    """A researcher.toml showing every setting (defaults where `values` gives none)."""
    return settings.render(SCHEMA, TITLE, values)


def load(path: Path) -> ResearcherConfig:
    needed = (PATHS - {("dictionary", "extension")}) | {("credentials", "root_fingerprint")}
    v = settings.load(path, SCHEMA, paths=PATHS, required=needed,
                      what="researcher config (make one with `oncofed query config`)")
    settings.host_port(v["hub"]["address"], f"{path}: [hub] address")
    c = v["credentials"]
    fp = settings.fingerprint(c["root_fingerprint"], f"{path}: [credentials] root_fingerprint")
    ext = v["dictionary"]["extension"] or None
    return ResearcherConfig(path, v["hub"]["address"], v["hub"]["server_name"] or None, c["identity_key"],
                            c["tls_key"], c["cert"], c["root_cert"], fp, ext)
