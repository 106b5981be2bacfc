"""`oncofed node` — a centre admin's commands for the node and its store."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from oncofed.cli.node_query_cmd import query
from oncofed.cli.output import emit_json, json_option
from oncofed.errors import IngestRejected, StoreLocked
from oncofed.node.config import NodePaths
from oncofed.node.node import init_node, open_node

node_dir_option = click.option(
    "--node", "-n", "node_dir", type=click.Path(path_type=Path), default=Path("."),
    envvar="ONCOFED_NODE_DIR", show_default=True, show_envvar=True,
    help="The node directory (made by `oncofed node init`).",
)


@click.group()
def node() -> None:
    """Run and administer this centre's node: store, ingest, status."""


@node.command("init")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--id", "node_id", required=True, help="This centre's id in the federation registry.")
@click.option("--extension", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="The federation's dictionary extension file (every node of the federation uses the same).")
@json_option
def init(directory: Path, node_id: str, extension: Path | None, as_json: bool) -> None:
    """Create a node directory: config, secrets (0600) and an empty store."""
    paths = init_node(directory, node_id, extension)
    with open_node(paths.root) as n:
        status = n.status()
    if as_json:
        emit_json({"directory": str(paths.root), **status})
        return
    click.echo(f"created node {node_id!r} in {paths.root}")
    click.echo(f"  dictionary: {status['dictionary_label']}")
    click.echo(f"  config:     {paths.config}")
    click.echo(f"  store:      {paths.store}")
    click.echo(f"  secrets:    {paths.secrets} (keep it backed up and private)")


@node.command("ingest")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@node_dir_option
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@json_option
def ingest(files: tuple[Path, ...], node_dir: Path, progress: bool | None, as_json: bool) -> None:
    """Validate and load registry CSV files, each all-or-nothing.

    Every fault is reported with its line and column; a file with any fault changes nothing.
    Loading the same file again changes nothing; a corrected file updates the rows it changes.
    """
    show_bar = sys.stderr.isatty() if progress is None else progress
    results = []
    log = _node_logger(NodePaths(node_dir))
    with open_node(node_dir) as n:
        for path in files:
            size = path.stat().st_size if path.is_file() else 0
            try:
                if show_bar and size:
                    with click.progressbar(length=size, label=f"ingesting {path.name}", file=sys.stderr) as bar:
                        done = [0]

                        def tick(read: int, bar: object = bar, done: list[int] = done) -> None:
                            bar.update(read - done[0])  # type: ignore[attr-defined]
                            done[0] = read

                        result = n.ingest(path, tick, on_lock_wait=_say_waiting)
                else:
                    result = n.ingest(path, on_lock_wait=_say_waiting)
            except StoreLocked:
                log.warning("ingest not started file=%s: the store is locked by another process", path.name)
                raise
            except IngestRejected as exc:
                log.warning("ingest rejected file=%s faults=%d", path.name, exc.total)
                _print_faults(exc, as_json)
                sys.exit(exc.exit_code)
            log.info("ingest ok file=%s sha256=%s rows=%d inserted=%d updated=%d unchanged=%d seconds=%.2f",
                     result.file_name, result.file_sha256, result.rows, result.inserted,
                     result.updated, result.unchanged, result.seconds)
            for warning in result.warnings:
                log.warning("ingest file=%s warning: %s", result.file_name, warning)
            results.append(result)
            if not as_json:
                click.echo(
                    f"{result.file_name}: {result.rows} rows loaded ({result.inserted} new, "
                    f"{result.updated} updated, {result.unchanged} unchanged) in {result.seconds:.2f} s "
                    f"({result.rows_per_second:,.0f} rows/s)"
                )
                for warning in result.warnings:
                    click.echo(f"  warning: {warning}")
    if as_json:
        emit_json([{**r.__dict__, "rows_per_second": round(r.rows_per_second)} for r in results])


def _say_waiting(message: str) -> None:
    click.echo(message, err=True)


def _print_faults(exc: IngestRejected, as_json: bool) -> None:
    if as_json:
        emit_json({"error": str(exc), "faults_total": exc.total,
                   "faults": [{"line": ln, "column": c, "reason": r} for ln, c, r in exc.faults]})
        return
    click.echo(f"error: {exc}", err=True)
    for line, column, reason in exc.faults:
        where = f"line {line}" + (f", column {column}" if column else "")
        click.echo(f"  {where}: {reason}", err=True)
    if exc.total > len(exc.faults):
        click.echo(f"  … and {exc.total - len(exc.faults)} more", err=True)


@node.command("status")
@node_dir_option
@json_option
def status(node_dir: Path, as_json: bool) -> None:
    """Row counts, dictionary, last ingest and store size."""
    with open_node(node_dir) as n:
        s = n.status()
    if as_json:
        emit_json(s)
        return
    click.echo(f"node {s['node_id']}  (oncofed {s['software_version']})")
    click.echo(f"  dictionary:   {s['dictionary_label']}")
    click.echo(f"  tumours:      {s['tumours']:,}")
    click.echo(f"  patients:     {s['patients']:,}")
    click.echo(f"  store size:   {s['store_bytes'] / 1e6:,.1f} MB")
    last = s["last_ingest"]
    if last:
        click.echo(
            f"  last ingest:  #{last['ingest_id']} {last['file_name']} at {last['finished_at']} "
            f"({last['rows']:,} rows: {last['inserted']:,} new, {last['updated']:,} updated, "
            f"{last['unchanged']:,} unchanged)"
        )
    else:
        click.echo("  last ingest:  none yet (oncofed node ingest FILE.csv)")


@node.command("summary")
@node_dir_option
@json_option
def summary(node_dir: Path, as_json: bool) -> None:
    """Your own overview of the store (sites, stages, sex, years): local only, never sent anywhere."""
    from oncofed.node.store.summary import local_summary

    with open_node(node_dir) as n:
        s = local_summary(n.conn, n.dictionary)
        node_id = n.config.node_id
    if as_json:
        emit_json(s)
        return
    if not s["tumours"]:
        click.echo(f"node {node_id}: no tumours loaded yet (oncofed node ingest FILE.csv)")
        return
    click.echo(f"node {node_id}: {s['tumours']:,} tumours in {s['patients']:,} patients, "
               f"incidence {s['incidence_from']} to {s['incidence_to']}, "
               f"median age {s['median_age_at_incidence']}, {s['multiple_primaries']:,} later primaries")
    for title, key in (("site (ICD-10)", "by_site"), ("summary stage", "by_stage"), ("sex", "by_sex"),
                       ("vital status", "by_vital_status"), ("centre role", "by_centre_role")):
        _wrapped(title, [f"{c['label']} {c['tumours']:,}" for c in s[key]])
    _wrapped("incidence year", [f"{y['year'] if y['year'] is not None else '(missing)'}: {y['tumours']:,}"
                                for y in s["by_year"]])


def _wrapped(title: str, cells: list[str], width: int = 100) -> None:
    """One labelled line of `cells`, wrapped under its title between cells (never inside one)."""
    head = f"  {title + ':':16}"
    lines, line = [], head
    for i, cell in enumerate(cells or ["none"]):
        piece = cell + ("," if i < len(cells) - 1 else "")
        if line.strip() and line != head and len(line) + 1 + len(piece) > width:
            lines.append(line)
            line = " " * len(head)
        line += ("" if line.endswith(" ") else " ") + piece
    lines.append(line)
    click.echo("\n".join(lines))


def _node_logger(paths: NodePaths) -> logging.Logger:
    """File log in the node directory; never receives raw identifiers (ingest never passes any)."""
    log = logging.getLogger("oncofed.node")
    target = str((paths.logs / "node.log").resolve())
    for h in list(log.handlers):  # one process may serve several nodes (tests, tools): one file each
        if isinstance(h, logging.FileHandler) and h.baseFilename != target:
            log.removeHandler(h)
            h.close()
    if paths.logs.is_dir() and not any(isinstance(h, logging.FileHandler) for h in log.handlers):
        handler = logging.FileHandler(target, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    return log


node.add_command(query)
