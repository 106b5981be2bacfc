"""Ingest against real node directories and real SQLite files: every fault is reported with
its line and column, and a rejected file changes nothing."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from conftest import CORE, valid_row, write_csv

from oncofed.errors import DictionaryMismatch, IngestRejected, NodeError, UsageError
from oncofed.node.node import init_node, open_node


@pytest.fixture(autouse=True, params=["serial", "parallel"])
def ingest_mode(request, monkeypatch):
    """Every test here runs twice: in one process, and with worker processes preparing chunks of
    a few rows each (so chunk boundaries, line numbers and cross-chunk repeats are exercised)."""
    from oncofed.node.store import parallel
    from oncofed.node.store.ingest import Ingestor

    if request.param == "serial":  # whatever the file's size
        monkeypatch.setattr(Ingestor, "workers", 0)
    if request.param == "parallel":
        monkeypatch.setattr(Ingestor, "parallel_min_bytes", 0)
        monkeypatch.setattr(Ingestor, "workers", 2)
        monkeypatch.setattr(Ingestor, "chunk_bytes", 700)
        monkeypatch.setattr(parallel, "BLOCK_BYTES", 1000)
    return request.param


def dump(node_dir: Path) -> list[tuple]:
    """Every tumour row and the ingest count: 'the store' for before/after comparisons."""
    con = sqlite3.connect(node_dir / "store.sqlite")
    try:
        rows = con.execute("SELECT * FROM tumours ORDER BY tumour_id").fetchall()
        ingests = con.execute("SELECT count(*) FROM ingests").fetchone()
        return [*rows, ingests]
    finally:
        con.close()


def ingest(node_dir: Path, path: Path):
    with open_node(node_dir) as n:
        return n.ingest(path)


def rejected(node_dir: Path, path: Path) -> IngestRejected:
    before = dump(node_dir)
    with pytest.raises(IngestRejected) as info:
        ingest(node_dir, path)
    assert dump(node_dir) == before, "a rejected file must change nothing"
    return info.value


@pytest.fixture
def loaded(node_dir: Path, tmp_path: Path) -> Path:
    ingest(node_dir, write_csv(tmp_path / "first.csv", [valid_row(i) for i in range(1, 11)]))
    return node_dir


# ---------------------------------------------------------------- init


def test_init_creates_private_secrets_and_documented_config(node_dir: Path):
    assert stat.S_IMODE(node_dir.stat().st_mode) == 0o700
    for key in ("pseudonym.key", "perturbation.key", "ledger.key"):
        p = node_dir / "secrets" / key
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert len(p.read_bytes()) == 32
    keys = {(node_dir / "secrets" / k).read_bytes() for k in ("pseudonym.key", "perturbation.key", "ledger.key")}
    assert len(keys) == 3, "pseudonymisation, perturbation and ledger keys must differ"
    text = (node_dir / "node.toml").read_text()
    assert 'id = "centre-test"' in text and "batch_rows = 5000" in text and "# " in text
    con = sqlite3.connect(node_dir / "store.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_init_refuses_bad_id_and_non_empty_directory(tmp_path: Path):
    with pytest.raises(UsageError, match="node id"):
        init_node(tmp_path / "a", "Centre A")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("x")
    with pytest.raises(UsageError, match="not an empty directory"):
        init_node(tmp_path / "b", "centre-b")
    assert not any(p.name.startswith(".a.init") or p.name.startswith(".b.init") for p in tmp_path.iterdir())


def test_open_refuses_uninitialised_directory(tmp_path: Path):
    with pytest.raises(NodeError, match="not an oncofed node directory"):
        open_node(tmp_path)


def test_open_refuses_store_of_another_dictionary(tmp_path: Path):
    from oncofed import dictionary as dictmod

    ext = dictmod.bundled_extensions()[0]
    root = init_node(tmp_path / "n", "centre-x", ext).root
    (root / "extension.toml").write_bytes(ext.read_bytes() + b"\n# edited\n")
    with pytest.raises(DictionaryMismatch, match="created with dictionary"):
        open_node(root)


# ---------------------------------------------------------------- loading


def test_valid_file_loads_and_derives_fields(node_dir: Path, tmp_path: Path):
    rows = [valid_row(1), valid_row(2, topography="C44.5", morphology="8720", er="unknown", pr="unknown",
                                   her2="unknown", pN="N0", cN="N0", stage_group="I", pT="T1", cT="T1",
                                   sex="1", birth_date="1950-03-03", incidence_date="2018-03-02")]
    result = ingest(node_dir, write_csv(tmp_path / "a.csv", rows))
    assert (result.rows, result.inserted, result.updated, result.unchanged) == (2, 2, 0, 0)
    con = sqlite3.connect(node_dir / "store.sqlite")
    got = con.execute(
        "SELECT sex, age_at_incidence, birth_year, icd10, stage_summary, topography, incidence_date "
        "FROM tumours_labelled ORDER BY age_at_incidence").fetchall()
    assert got == [("2", 57, 1960, "C50.4", "regional", "C50.4", "2018-03-02"),
                   ("1", 67, 1950, "C43.5", "localised", "C44.5", "2018-03-02")]


def test_same_file_twice_leaves_the_same_store(node_dir: Path, tmp_path: Path):
    path = write_csv(tmp_path / "a.csv", [valid_row(i) for i in range(1, 50)])
    ingest(node_dir, path)
    first = dump(node_dir)[:-1]
    again = ingest(node_dir, path)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 49)
    assert dump(node_dir)[:-1] == first


def test_corrected_redelivery_updates_rows(loaded: Path, tmp_path: Path):
    rows = [valid_row(i) for i in range(1, 11)]
    rows[3] = valid_row(4, vital_status="dead", death_date="2020-02-02", vital_status_date="2020-02-02")
    rows.append(valid_row(11))
    result = ingest(loaded, write_csv(tmp_path / "fix.csv", rows))
    assert (result.inserted, result.updated, result.unchanged) == (1, 1, 9)
    con = sqlite3.connect(loaded / "store.sqlite")
    assert con.execute("SELECT count(*) FROM tumours_labelled WHERE vital_status = 'dead'").fetchone() == (1,)
    assert con.execute("SELECT count(*) FROM tumours").fetchone() == (11,)


def test_raw_identifiers_never_reach_store_or_logs(tmp_path: Path):
    from click.testing import CliRunner

    from oncofed.cli import main

    root = tmp_path / "node"
    runner = CliRunner()
    assert runner.invoke(main, ["node", "init", str(root), "--id", "centre-p"]).exit_code == 0
    good = write_csv(tmp_path / "a.csv", [valid_row(i, patient_id=f"SECRETPAT{i}X", tumour_id=f"SECRETTUM{i}Y")
                                          for i in range(1, 30)])
    bad = write_csv(tmp_path / "b.csv", [valid_row(1, patient_id="SECRETPAT1X", tumour_id="SECRETTUM1Y"),
                                         valid_row(2, patient_id="SECRETPAT1X", tumour_id="SECRETTUM1Y", sex="x")])
    assert runner.invoke(main, ["node", "ingest", str(good), "-n", str(root)]).exit_code == 0
    out = runner.invoke(main, ["node", "ingest", str(bad), "-n", str(root)])
    assert out.exit_code == 3
    assert "SECRET" not in out.output
    with open_node(root) as n:
        n.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    files = [p for p in root.rglob("*") if p.is_file() and p.parent.name != "secrets"]
    assert any(p.name == "node.log" for p in files)
    for p in files:
        assert b"SECRETPAT" not in p.read_bytes() and b"SECRETTUM" not in p.read_bytes(), p


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("change", "column", "reason"),
    [
        ({"sex": "3"}, "sex", "not a code of sex"),
        ({"tumour_seq": "one"}, "tumour_seq", "not a whole number"),
        ({"tumour_seq": "0"}, "tumour_seq", "outside 1..99"),
        ({"topography": "C50.7"}, "topography", "not an ICD-O-3 topography"),
        ({"morphology": "7999"}, "morphology", "outside 8000..9993"),
        ({"incidence_date": "2018-02-30"}, "incidence_date", "not a date"),
        ({"incidence_date": "03/02/2018"}, "incidence_date", "not a date"),
        ({"vital_status_date": "2099-01-01"}, "vital_status_date", "in the future"),
        ({"incidence_date": "1959-01-01", "surgery_start_date": "", "surgery": "no",
          "chemotherapy_start_date": "", "chemotherapy": "no", "hormone_therapy": "no",
          "hormone_therapy_start_date": ""}, "incidence_date", "before birth_date"),
        ({"vital_status": "dead", "death_date": "2017-01-01", "vital_status_date": "2017-01-01"},
         "death_date", "before incidence_date"),
        ({"vital_status": "dead"}, "death_date", "required when vital_status is dead"),
        ({"cM": "M1c1"}, "cM", "does not exist in the stated tnm_edition"),
        ({"tnm_edition": "7", "cM": "MX"}, "cM", "does not exist in the stated tnm_edition"),
        ({"morphology": "9806", "icdo_version": "3.0"}, "morphology", "does not exist in the stated icdo_version"),
        ({"basis_of_diagnosis": "8", "bod_scheme": "ENCR1999"}, "basis_of_diagnosis",
         "does not exist in the stated bod_scheme"),
        ({"dco": "1"}, "dco", "basis_of_diagnosis is 0"),
        ({"centre_role": "referred"}, "first_contact_date", "required when centre_role is referred"),
        ({"tnm_edition": ""}, "tnm_edition", "required when T, N, M"),
        ({"radiotherapy_start_date": "2018-06-01"}, "radiotherapy_start_date", "radiotherapy is not yes"),
        ({"vs_source": ""}, "vs_source", "missing (required)"),
        ({"patient_id": ""}, "patient_id", "missing (required)"),
    ],
)
def test_each_fault_is_reported_with_line_and_column(loaded: Path, tmp_path: Path, change, column, reason):
    rows = [valid_row(i) for i in range(100, 105)]
    rows[2] = valid_row(102, **change)
    err = rejected(loaded, write_csv(tmp_path / "bad.csv", rows))
    assert err.exit_code == 3
    assert any(line == 4 and col == column and reason in why for line, col, why in err.faults), err.faults


def test_duplicate_tumour_ids_within_and_across_batches(loaded: Path, tmp_path: Path):
    rows = [valid_row(i) for i in range(200, 230)]
    rows[5] = valid_row(200)   # same batch as line 2
    rows[25] = valid_row(201)  # a later batch
    path = write_csv(tmp_path / "dup.csv", rows)
    before = dump(loaded)
    with open_node(loaded) as n:
        ing = n.ingestor()
        ing.batch_rows = 10
        with pytest.raises(IngestRejected) as info:
            ing.ingest(path)
    assert dump(loaded) == before
    dupes = sorted(line for line, col, _ in info.value.faults if col == "tumour_id")
    assert dupes == [7, 27]


def test_first_twenty_faults_shown_in_line_order_all_counted(loaded: Path, tmp_path: Path):
    rows = [valid_row(i, sex="5", grade="x") for i in range(300, 340)]
    err = rejected(loaded, write_csv(tmp_path / "many.csv", rows))
    assert err.total == 80
    assert len(err.faults) == 20
    assert [f[0] for f in err.faults] == sorted(f[0] for f in err.faults)
    assert err.faults[0][0] == 2 and err.faults[-1][0] == 11


def test_header_faults(loaded: Path, tmp_path: Path):
    cols = [c for c in CORE.input_columns if c != "sex"] + ["favourite_colour"]
    err = rejected(loaded, write_csv(tmp_path / "h.csv", [valid_row(1)], columns=cols))
    assert "unknown column(s): favourite_colour" in str(err)
    assert "missing required column(s): sex" in str(err)


def test_optional_columns_may_be_absent(loaded: Path, tmp_path: Path):
    cols = [c for c in CORE.input_columns if c not in ("grade", "laterality")]
    assert ingest(loaded, write_csv(tmp_path / "o.csv", [valid_row(500)], columns=cols)).inserted == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (",".join(CORE.input_columns).encode() + b"\n", "no data rows"),
        (";".join(CORE.input_columns).encode() + b"\n1;2\n", "separated by ';'"),
        ("\t".join(CORE.input_columns).encode() + b"\n", "separated by tab"),
    ],
)
def test_unusable_files(loaded: Path, tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    assert message in str(rejected(loaded, path))


def test_non_utf8_file(loaded: Path, tmp_path: Path):
    path = write_csv(tmp_path / "latin.csv", [valid_row(i) for i in range(600, 603)])
    path.write_bytes(path.read_bytes().replace(b"diagnosed_here", "diagnosed_h\u00e9re".encode("latin-1"), 1))
    assert "not valid UTF-8" in str(rejected(loaded, path))


def test_wrong_field_count(loaded: Path, tmp_path: Path):
    path = write_csv(tmp_path / "w.csv", [valid_row(i) for i in range(700, 703)])
    lines = path.read_text().splitlines()
    lines[2] = lines[2] + ",extra"
    path.write_text("\n".join(lines) + "\n")
    err = rejected(loaded, path)
    assert err.faults[0][0] == 3 and "expected" in err.faults[0][2]


def test_missing_file_and_directory(loaded: Path, tmp_path: Path):
    with pytest.raises(UsageError, match="file not found"):
        ingest(loaded, tmp_path / "nope.csv")
    with pytest.raises(UsageError, match="is a directory"):
        ingest(loaded, tmp_path)


def test_excel_style_export_with_bom_crlf_and_quotes_loads(node_dir: Path, tmp_path: Path):
    path = write_csv(tmp_path / "excel.csv", [valid_row(i) for i in range(800, 805)])
    text = path.read_text()
    text = text.replace("diagnosed_here", '"diagnosed_here"').replace("\n", "\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    result = ingest(node_dir, path)
    assert (result.rows, result.inserted) == (5, 5)
    again = write_csv(tmp_path / "plain.csv", [valid_row(i) for i in range(800, 805)])
    assert ingest(node_dir, again).unchanged == 5, "the same rows, however they were quoted, are unchanged"


def test_malformed_csv_quote_is_reported_not_crashed(loaded: Path, tmp_path: Path):
    path = write_csv(tmp_path / "q.csv", [valid_row(i) for i in range(900, 903)])
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("diagnosed_here", '"diagnosed_here"x', 1)  # text after a closing quote
    path.write_text("\n".join(lines) + "\n")
    err = rejected(loaded, path)
    assert "line 3: malformed CSV" in str(err)


def test_stored_tumour_listed_twice_in_different_batches_is_a_duplicate(loaded: Path, tmp_path: Path):
    """Tumour 3 is already stored; the file lists it in its first and its third batch with
    different values: without the check, the last copy would silently win."""
    rows = [valid_row(i) for i in range(1, 11)]  # re-delivery of the stored tumours 1..10
    rows.append(valid_row(3, sex="1"))           # line 12, a later batch
    path = write_csv(tmp_path / "twice.csv", rows)
    before = dump(loaded)
    with open_node(loaded) as n:
        ing = n.ingestor()
        ing.batch_rows = 4
        with pytest.raises(IngestRejected) as info:
            ing.ingest(path)
    assert dump(loaded) == before
    assert [(ln, col) for ln, col, _ in info.value.faults] == [(12, "tumour_id")]
    assert "same as line 4" in info.value.faults[0][2]


def test_workers_setting_in_node_toml(node_dir: Path, tmp_path: Path, ingest_mode):
    from oncofed.node.store import parallel

    cfg = node_dir / "node.toml"
    assert "workers = 0" in cfg.read_text()
    cfg.write_text(cfg.read_text().replace("workers = 0", "workers = 1"))
    with open_node(node_dir) as n:
        ing = n.ingestor()
        assert parallel.workers_for(10**9, ing.workers, 0) == 0, "workers = 1 means no worker processes"
        assert ing.ingest(write_csv(tmp_path / "a.csv", [valid_row(i) for i in range(1, 4)])).inserted == 3
    cfg.write_text(cfg.read_text().replace("workers = 1", "workers = -1"))
    with pytest.raises(NodeError, match="workers"):
        open_node(node_dir)
