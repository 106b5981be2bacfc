"""`oncofed hub` — the hub operator's commands (for now: make the hub's keys)."""

from __future__ import annotations

from pathlib import Path

import click

from oncofed.cli.keys_cmd import (
    KEY_PASSPHRASE_ENV,
    create_member_keys,
    passphrase_option,
    print_created,
    read_passphrase,
)
from oncofed.cli.output import json_option
from oncofed.errors import UsageError


@click.group()
def hub() -> None:
    """Run the hub: the untrusted relay between researchers and centres."""


@hub.command("init")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--id", "member_id", default="hub", show_default=True,
              help="The hub's id in the federation registry.")
@passphrase_option
@click.option("--no-passphrase", is_flag=True,
              help="Store the private keys unencrypted (0600) for an unattended service.")
@json_option
def init(directory: Path, member_id: str, passphrase_file: Path | None, no_passphrase: bool,
         as_json: bool) -> None:
    """Create the hub's identity and TLS keys, CSR and enrolment request in DIRECTORY.

    The hub never holds the federation root: the authority enrols it like any member
    (`oncofed authority enroll hub DIRECTORY/enrolment-request.bin`).
    """
    if no_passphrase and passphrase_file:
        raise UsageError("--no-passphrase and --passphrase-file exclude each other")
    passphrase = None if no_passphrase else read_passphrase(
        passphrase_file, KEY_PASSPHRASE_ENV, what=f"the keys of {member_id}", confirm=True)
    print_created(create_member_keys(directory, "hub", member_id, passphrase), as_json)
