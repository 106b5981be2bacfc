"""`oncofed authority` — the federation authority's commands, run on its offline machine.

Everything that signs (enrol, publish, issue, revoke) unlocks the root key with its passphrase,
read from --passphrase-file, $ONCOFED_AUTHORITY_PASSPHRASE or a prompt; listing needs none.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from oncofed import dictionary as dictmod
from oncofed.cli.keys_cmd import passphrase_option, read_passphrase
from oncofed.cli.output import emit_json, json_option
from oncofed.errors import UsageError
from oncofed.keys.authority import DEFAULT_VALID_DAYS, Authority, Published
from oncofed.keys.permits import KNOWN_ANALYSES, KNOWN_OUTCOMES, verify_permit
from oncofed.keys.registry import iso, verify_registry
from oncofed.keys.tls import cert_fingerprint

AUTHORITY_PASSPHRASE_ENV = "ONCOFED_AUTHORITY_PASSPHRASE"  # noqa: S105 — a variable name, not a secret

authority_dir_option = click.option(
    "--authority", "-a", "directory", type=click.Path(path_type=Path, file_okay=False),
    default=Path("."), envvar="ONCOFED_AUTHORITY_DIR", show_default=True, show_envvar=True,
    help="The authority directory (made by `oncofed authority init`).")
valid_days_option = click.option(
    "--valid-days", type=click.IntRange(1, 90), default=DEFAULT_VALID_DAYS, show_default=True,
    help="Days until nodes treat the published documents as stale (publish again before).")


def _unlock(directory: Path, passphrase_file: Path | None) -> Authority:
    passphrase = read_passphrase(passphrase_file, AUTHORITY_PASSPHRASE_ENV,
                                 what="the federation root key", confirm=False)
    return Authority.open(directory, passphrase)


def _print_published(pub: Published, as_json: bool) -> None:
    data: dict[str, Any] = {
        "registry_version": pub.registry.version if pub.registry else None,
        "revocations_version": pub.revocations.version,
        "next_update": pub.revocations.next_update, "files": [str(p) for p in pub.paths],
        "changes": pub.changes.to_json() if pub.changes else None}
    if as_json:
        emit_json(data)
        return
    if pub.registry:
        click.echo(f"published registry v{pub.registry.version} "
                   f"({len(pub.registry.members)} members)")
    click.echo(f"published revocation list v{pub.revocations.version}; both stale after "
               f"{iso(pub.revocations.next_update)}")
    if pub.changes:
        for kind in ("added", "removed", "rekeyed"):
            for m in getattr(pub.changes, kind):
                click.echo(f"  {kind:8} {m.role:10} {m.member_id}")
    for p in pub.paths:
        click.echo(f"  wrote {p}")


@click.group()
def authority() -> None:
    """The federation authority: root CA, registry of members, data permits (offline)."""


@authority.command("init")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--federation", required=True, help="The federation's name, e.g. breast-network.")
@click.option("--days", type=click.IntRange(1, 36500), default=3650, show_default=True,
              help="Validity of the root certificate.")
@passphrase_option
@json_option
def init(directory: Path, federation: str, days: int, passphrase_file: Path | None,
         as_json: bool) -> None:
    """Create the federation root (passphrase-encrypted key) and an empty registry."""
    passphrase = read_passphrase(passphrase_file, AUTHORITY_PASSPHRASE_ENV,
                                 what="the new federation root key", confirm=True)
    auth = Authority.create(directory, passphrase, federation=federation, days=days)
    info = {"directory": str(directory), "federation": federation,
            "root_fingerprint": auth.root.fingerprint,
            "root_certificate": str(directory / "root.cert.pem")}
    if as_json:
        emit_json(info)
        return
    click.echo(f"created federation {federation!r} in {directory}")
    click.echo(f"  root fingerprint (give it to every centre admin out of band):\n"
               f"  {auth.root.fingerprint}")


@authority.command("enroll")
@click.argument("role", type=click.Choice(["centre", "researcher", "hub"]))
@click.argument("request", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@authority_dir_option
@click.option("--days", type=click.IntRange(1, 366), default=365, show_default=True,
              help="Certificate validity (at most a year).")
@click.option("--dns", "dns_names", multiple=True, help="Host name for the TLS certificate.")
@click.option("--ip", "ip_addresses", multiple=True, help="IP address for the TLS certificate.")
@passphrase_option
@json_option
def enroll(role: str, request: Path, directory: Path, days: int, dns_names: tuple[str, ...],
           ip_addresses: tuple[str, ...], passphrase_file: Path | None, as_json: bool) -> None:
    """Certify a member's TLS key and add it to the next registry (re-enrolling rotates keys).

    Compare the printed Ed25519 fingerprint with the member over another channel first.
    """
    auth = _unlock(directory, passphrase_file)
    done = auth.enroll(request.read_bytes(), role, days=days,
                       dns_names=list(dns_names) or None, ip_addresses=list(ip_addresses) or None)
    info = {**done.member.to_json(), "certificate": str(done.cert_path), "rotated": done.rotated,
            "in_registry_version": auth.next_version}
    if as_json:
        emit_json(info)
        return
    click.echo(f"{'rotated keys of' if done.rotated else 'enrolled'} {role} "
               f"{done.member.member_id!r}; in registry v{auth.next_version} once published")
    click.echo(f"  ed25519 sha256  {done.member.identity.signing_fingerprint}")
    click.echo(f"  certificate     {done.cert_path}")


@authority.group("members")
def members() -> None:
    """Members of the federation as the authority records them."""


@members.command("list")
@authority_dir_option
@json_option
def members_list(directory: Path, as_json: bool) -> None:
    """List members, including those waiting for the next published registry."""
    auth = Authority.open(directory)
    rows = [m.to_json() for m in auth.members()]
    if as_json:
        emit_json(rows)
        return
    for m in rows:
        click.echo(f"{m['role']:10} {m['member_id']:24} since v{m['added_in_version']:<4} "
                   f"ed25519 {str(m['ed25519_sha256'])[:16]}…")


@members.command("revoke")
@click.argument("member_id")
@click.option("--reason", required=True, help="Why, for the centre admins' records.")
@click.option("--compromised", is_flag=True, help="The key leaked (CRL reason keyCompromise).")
@authority_dir_option
@valid_days_option
@passphrase_option
@json_option
def members_revoke(member_id: str, reason: str, compromised: bool, directory: Path,
                   valid_days: int, passphrase_file: Path | None, as_json: bool) -> None:
    """Withdraw a member's keys and certificate, publishing registry and lists at once."""
    auth = _unlock(directory, passphrase_file)
    _print_published(auth.revoke_member(member_id, reason, compromised=compromised,
                                        valid_days=valid_days), as_json)


@authority.group("registry")
def registry() -> None:
    """The root-signed federation registry."""


@registry.command("publish")
@authority_dir_option
@valid_days_option
@passphrase_option
@json_option
def registry_publish(directory: Path, valid_days: int, passphrase_file: Path | None,
                     as_json: bool) -> None:
    """Sign and write the next registry, revocation list and CRL (for the hub to distribute)."""
    _print_published(_unlock(directory, passphrase_file).publish(valid_days=valid_days), as_json)


@registry.command("show")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
                required=False)
@authority_dir_option
@json_option
def registry_show(file: Path | None, directory: Path, as_json: bool) -> None:
    """Verify and show a registry file (default: the last published one)."""
    cert = (directory / "root.cert.pem").read_bytes()
    path = file or directory / "published" / "registry.bin"
    if not path.exists():
        raise UsageError(f"no registry at {path}; run: oncofed authority registry publish")
    reg = verify_registry(cert, cert_fingerprint(cert), path.read_bytes())
    data = {"federation": reg.federation, "version": reg.version, "issued_at": reg.issued_at,
            "next_update": reg.next_update, "root_fingerprint": reg.root_fingerprint,
            "members": [m.to_json() for m in reg.members]}
    if as_json:
        emit_json(data)
        return
    click.echo(f"{reg.federation} registry v{reg.version}, issued {iso(reg.issued_at)}, "
               f"stale after {iso(reg.next_update)}")
    for m in reg.members:
        click.echo(f"  {m.role:10} {m.member_id:24} ed25519 {m.identity.signing_fingerprint[:16]}…")


def _utc(value: str) -> int:
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"not an ISO date or date-time: {value!r}") from None
    return int((t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp())


@authority.group("permits")
def permits() -> None:
    """Data permits: issue, list and revoke."""


@permits.command("issue")
@click.option("--researcher", "researcher_id", required=True, help="Enrolled researcher's id.")
@click.option("--title", required=True, help="The research project's title.")
@click.option("--analysis", "analyses", multiple=True, required=True,
              type=click.Choice(KNOWN_ANALYSES), help="An allowed analysis (repeatable).")
@click.option("--field", "fields", multiple=True, required=True,
              help="An allowed dictionary field, spelled as the dictionary does (cT, pN; repeatable).")
@click.option("--outcome", "outcomes", multiple=True, type=click.Choice(KNOWN_OUTCOMES),
              help="A survival outcome the permit may follow (repeatable): os reads death and vital "
                   "status, rfs also surgery, recurrence and disease assessment. Required with "
                   "kaplan_meier or logrank.")
@click.option("--min-cell-count", type=click.IntRange(1), required=True,
              help="Smallest cell count a released figure may rest on.")
@click.option("--epsilon", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Differential-privacy budget ε per centre (DP mode); omit for cell-key.")
@click.option("--valid-from", default=None, help="ISO date/time (UTC); default now.")
@click.option("--valid-until", required=True, help="ISO date/time (UTC), exclusive.")
@click.option("--data-holder", "data_holders", multiple=True,
              help="Centre the permit is addressed to (repeatable; default every centre).")
@click.option("--allow-exact-dates", is_flag=True, help="Allow day-precision dates and times.")
@click.option("--extension", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="The federation's dictionary extension, to check field names.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the permit file here.")
@authority_dir_option
@passphrase_option
@json_option
def permits_issue(researcher_id: str, title: str, analyses: tuple[str, ...],
                  fields: tuple[str, ...], outcomes: tuple[str, ...], min_cell_count: int, epsilon: float | None,
                  valid_from: str | None, valid_until: str, data_holders: tuple[str, ...],
                  allow_exact_dates: bool, extension: Path | None, out: Path | None,
                  directory: Path, passphrase_file: Path | None, as_json: bool) -> None:
    """Issue a root-signed data permit to an enrolled researcher."""
    try:
        known = dictmod.load(extension).fields
    except dictmod.DictionaryError as exc:
        raise UsageError(str(exc)) from None
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise UsageError(f"not dictionary fields: {', '.join(unknown)}")
    auth = _unlock(directory, passphrase_file)
    start = _utc(valid_from) if valid_from else None
    path, signed = auth.issue_permit(
        researcher_id=researcher_id, project_title=title, analyses=analyses, fields=fields,
        min_cell_count=min_cell_count, epsilon=epsilon,
        not_before=start if start is not None else int(dt.datetime.now(dt.UTC).timestamp()),
        not_after=_utc(valid_until), data_holders=data_holders,
        allow_exact_dates=allow_exact_dates, outcomes=outcomes)
    if out is not None:
        out.write_bytes(signed.data)
    info = {"permit_id": signed.permit.permit_id, "sha256": signed.sha256, "file": str(path),
            **({"copy": str(out)} if out else {})}
    if as_json:
        emit_json(info)
        return
    click.echo(f"issued {signed.permit.permit_id} to {researcher_id}: {path}")
    click.echo(f"  sha256 {signed.sha256}")


@permits.command("list")
@authority_dir_option
@json_option
def permits_list(directory: Path, as_json: bool) -> None:
    """Every permit this authority issued, with its revocation state."""
    rows = Authority.open(directory).permits()
    if as_json:
        emit_json(rows)
        return
    for pid, p in rows.items():
        state = "REVOKED" if p["revoked"] else "issued"
        click.echo(f"{pid:20} {state:8} {p['researcher_id']:20} until {iso(p['not_after'])}  "
                   f"{p['project_title']}")


@permits.command("show")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@authority_dir_option
@json_option
def permits_show(file: Path, directory: Path, as_json: bool) -> None:
    """Verify a permit file against this authority's root and show its terms."""
    cert = (directory / "root.cert.pem").read_bytes()
    signed = verify_permit(cert, cert_fingerprint(cert), file.read_bytes())
    data = {"sha256": signed.sha256, **signed.permit.to_json()}
    if as_json:
        emit_json(data)
        return
    for k, v in data.items():
        click.echo(f"{k:28} {v}")


@permits.command("revoke")
@click.argument("permit_id")
@click.option("--reason", required=True, help="Why, for the centre admins' records.")
@authority_dir_option
@valid_days_option
@passphrase_option
@json_option
def permits_revoke(permit_id: str, reason: str, directory: Path, valid_days: int,
                   passphrase_file: Path | None, as_json: bool) -> None:
    """Add a permit to the revocation list and publish a new list version at once."""
    auth = _unlock(directory, passphrase_file)
    _print_published(auth.revoke_permit(permit_id, reason, valid_days=valid_days), as_json)
