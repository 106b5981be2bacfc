"""`oncofed keys` — make a member's keys where they will live, and show public key files.

`keys new` writes, into one folder: the identity key (Ed25519 + X25519, 0600, optionally
passphrase-encrypted), its public file, the TLS key (0600) and CSR, and one enrolment request to
carry to the authority. Private keys never leave that folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from oncofed.cli.output import emit_json, json_option
from oncofed.errors import UsageError
from oncofed.keys import keystore
from oncofed.keys.enrolment import REQUEST_NAME, make_request, read_request
from oncofed.keys.identity import Identity, PublicIdentity, check_member_id
from oncofed.keys.registry import now
from oncofed.keys.tls import new_member_tls_key

KEY_PASSPHRASE_ENV = "ONCOFED_KEY_PASSPHRASE"  # noqa: S105 — a variable name, not a secret


def read_passphrase(passphrase_file: Path | None, env: str, *, what: str,
                    confirm: bool) -> bytes:
    """The passphrase from a file, the environment or a prompt — never from the command line,
    where other users could read it in the process list."""
    if passphrase_file is not None:
        try:
            value = passphrase_file.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise UsageError(f"cannot read passphrase file: {exc}") from None
    elif os.environ.get(env):
        value = os.environ[env].encode()
    elif sys.stdin.isatty():
        value = click.prompt(f"passphrase for {what}", hide_input=True,
                             confirmation_prompt=confirm, default="",
                             show_default=False).encode()
    else:
        raise UsageError(f"{what} needs a passphrase: give --passphrase-file or set {env}")
    if not value:
        raise UsageError(f"empty passphrase for {what}")
    return value


def passphrase_option(fn: Any) -> Any:
    return click.option("--passphrase-file", type=click.Path(path_type=Path, dir_okay=False),
                        default=None, help="Read the passphrase from this file (first line).")(fn)


def create_member_keys(directory: Path, role: str, member_id: str,
                       passphrase: bytes | None) -> dict[str, Any]:
    """Generate identity and TLS keys in `directory` plus the enrolment request; return a
    summary for people and programs."""
    try:
        check_member_id(member_id)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    targets = [directory / keystore.PRIVATE_NAME, directory / keystore.PUBLIC_NAME,
               directory / REQUEST_NAME, directory / f"tls-{role}-{member_id}.key.pem"]
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise UsageError(f"refusing to overwrite existing key files: {', '.join(existing)}")
    identity = Identity.generate(role, member_id)
    key_path, pub_path = keystore.save_identity(identity, directory, passphrase)
    tls_key, csr = new_member_tls_key(directory, role, member_id, passphrase)
    request = directory / REQUEST_NAME
    request.write_bytes(make_request(identity, csr.read_bytes(), now()))
    return {"role": role, "member_id": member_id, "encrypted": passphrase is not None,
            "identity_key": str(key_path), "identity_public": str(pub_path),
            "tls_key": str(tls_key), "tls_csr": str(csr), "enrolment_request": str(request),
            "ed25519_sha256": identity.public.signing_fingerprint,
            "x25519_sha256": identity.public.box_fingerprint}


def print_created(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(summary)
        return
    click.echo(f"created {summary['role']} keys for {summary['member_id']!r}"
               f"{' (passphrase-protected)' if summary['encrypted'] else ''}")
    for k in ("identity_key", "tls_key", "identity_public", "tls_csr", "enrolment_request"):
        click.echo(f"  {k.replace('_', ' '):18} {summary[k]}")
    click.echo(f"  ed25519 sha256     {summary['ed25519_sha256']}")
    click.echo("send the enrolment request to the federation authority, and read the ed25519 "
               "fingerprint to them over another channel (phone, signed letter)")


@click.group()
def keys() -> None:
    """Members' identity and TLS keys: create them where they will live."""


@keys.command("new")
@click.option("--role", type=click.Choice(["centre", "researcher"]), required=True,
              help="The member's role (the hub uses `oncofed hub init`).")
@click.option("--id", "member_id", required=True, help="The member's id, e.g. centre-a.")
@click.option("--out", "directory", type=click.Path(path_type=Path, file_okay=False),
              required=True, help="Folder for the key files (created 0700).")
@passphrase_option
@click.option("--no-passphrase", is_flag=True,
              help="Store the private keys unencrypted (0600), e.g. for an unattended node.")
@json_option
def new(role: str, member_id: str, directory: Path, passphrase_file: Path | None,
        no_passphrase: bool, as_json: bool) -> None:
    """Generate identity (Ed25519, X25519) and TLS keys, a CSR and an enrolment request."""
    if no_passphrase and passphrase_file:
        raise UsageError("--no-passphrase and --passphrase-file exclude each other")
    passphrase = None if no_passphrase else read_passphrase(
        passphrase_file, KEY_PASSPHRASE_ENV, what=f"the keys of {member_id}", confirm=True)
    print_created(create_member_keys(directory, role, member_id, passphrase), as_json)


def describe_public(path: Path) -> dict[str, Any]:
    """Public facts of a key folder, identity.pub or enrolment request file."""
    if path.is_dir() or path.suffix == ".pub":
        public: PublicIdentity = keystore.load_public(path)
        return {"kind": "public identity", **public.to_json()}
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    req = read_request(data)
    return {"kind": "enrolment request (self-signature verified)", **req.identity.to_json(),
            "created_at": req.created_at}


@keys.command("show")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@json_option
def show(path: Path, as_json: bool) -> None:
    """Show role, id and key fingerprints of a key folder, identity.pub or enrolment request."""
    info = describe_public(path)
    if as_json:
        emit_json(info)
        return
    for k, v in info.items():
        click.echo(f"{k.replace('_', ' '):16} {v}")
