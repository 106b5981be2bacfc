"""Exporting a node's audit log for archiving or review (oncofed.node.audit writes it).

JSONL keeps everything needed to verify elsewhere: the entries as stored, then the checkpoints
with their signed bytes in hex. CSV is for reading in a spreadsheet: every text cell is made
printable and neutralised against formula injection (oncofed.node.audit_text.csv_cell), so a
researcher-chosen string can never run as a formula in the reviewer's spreadsheet.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from oncofed.node.audit import COLUMNS, AuditEntry, AuditError, AuditLog
from oncofed.node.audit_text import csv_cell

FORMATS = ("jsonl", "csv")


def export_log(log: AuditLog, path: Path, format: str = "jsonl") -> int:
    """Write entries (jsonl: then checkpoints, with their signed bytes in hex) to `path`,
    replacing it atomically. Returns the number of entries written."""
    if format not in FORMATS:
        raise AuditError(f"export format must be one of {', '.join(FORMATS)}, not {format!r}")
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    try:
        with log.snapshot(), tmp.open("w", encoding="utf-8", newline="") as fh:
            if format == "csv":
                writer = csv.writer(fh)
                writer.writerow(["seq", "at", *COLUMNS[1:], "prev_hash", "entry_hash"])
            for row in log.raw_rows():
                try:
                    entry = AuditEntry.from_row(row).to_json()
                except (ValueError, TypeError) as exc:
                    raise AuditError(f"entry {row['seq']} cannot be read ({exc}); run "
                                     "`oncofed node audit verify`") from None
                if format == "csv":
                    entry["fields"] = " ".join(entry["fields"])
                    entry["detail"] = json.dumps(entry["detail"], sort_keys=True)
                    writer.writerow([csv_cell(v) for v in (
                        entry["seq"], entry["at"], *(entry[c] for c in COLUMNS[1:]),
                        entry["prev_hash"], entry["entry_hash"])])
                else:
                    fh.write(json.dumps({"type": "entry", **entry}) + "\n")
                count += 1
            if format == "jsonl":
                for cp in log.checkpoints():
                    fh.write(json.dumps({"type": "checkpoint", **cp.to_json()}) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return count
