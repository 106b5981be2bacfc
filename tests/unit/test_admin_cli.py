"""The screens a new centre admin reads: `node summary` with labels and years, the preview's note
that small cell-key counts are noise, and `node trust pin` that never prints the real fingerprint."""

from __future__ import annotations

import json

from click.testing import CliRunner
from conftest import valid_row, write_csv

from oncofed.cli import main
from oncofed.keys.authority import Authority


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _load(node_dir, tmp_path):
    rows = [valid_row(1, sex="1", topography="C61.9", morphology="8140", incidence_date="2016-05-02"),
            valid_row(2, incidence_date="2017-01-10"), valid_row(3, incidence_date="2017-06-01"),
            valid_row(4)]
    rows[1]["vital_status"], rows[1]["vital_status_date"], rows[1]["death_date"] = "dead", "2020-01-01", "2020-01-01"
    loaded = run("node", "ingest", write_csv(tmp_path / "rows.csv", rows), "-n", node_dir)
    assert loaded.exit_code == 0, loaded.output


def test_summary_labels_codes_and_counts_by_incidence_year(node_dir, tmp_path):
    _load(node_dir, tmp_path)
    result = run("node", "summary", "-n", node_dir)
    assert result.exit_code == 0, result.output
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in result.output.splitlines()[1:]}
    assert lines["sex"] == "male 1, female 3"
    assert lines["vital status"] == "alive 3, dead 1"
    assert lines["centre role"] == "diagnosed at this centre 4"
    assert lines["incidence year"] == "2016: 1, 2017: 2, 2018: 1"
    data = json.loads(run("node", "summary", "-n", node_dir, "--json").stdout)
    assert data["by_sex"] == [{"value": "1", "label": "male", "tumours": 1},
                              {"value": "2", "label": "female", "tumours": 3}]
    assert data["by_year"] == [{"year": 2016, "tumours": 1}, {"year": 2017, "tumours": 2},
                               {"year": 2018, "tumours": 1}]


def test_summary_of_an_empty_store_says_so(node_dir):
    result = run("node", "summary", "-n", node_dir)
    assert result.exit_code == 0 and "no tumours loaded yet" in result.output


def test_the_preview_says_small_cell_key_counts_are_noise(node_dir, tmp_path):
    rows = [valid_row(i, her2=("pos", "neg", "low")[i % 3]) for i in range(1, 31)]
    assert run("node", "ingest", write_csv(tmp_path / "rows.csv", rows), "-n", node_dir).exit_code == 0
    q = tmp_path / "q.toml"
    q.write_text('[analysis.crosstab]\nfields = ["her2", "stage_summary"]\n')
    shown = run("node", "query", q, "-n", node_dir)
    assert shown.exit_code == 0, shown.output
    assert "disclosure control: cell_key, k = 10\n" in shown.output
    words = " ".join(shown.output.split())
    assert "noise of at most ±2 (0 stays 0)" in words
    assert "a small value such as 2–4 is perturbed noise released by design" in words
    assert max(len(line) for line in shown.output.splitlines()) <= 100
    assert "centre(s)" not in shown.output and "(1 centre" in shown.output
    as_json = json.loads(run("node", "query", q, "-n", node_dir, "--json").stdout)
    assert any("perturbed noise" in n for n in as_json["disclosure"]["notes"])
    exact = run("node", "query", q, "-n", node_dir, "--exact")
    assert "perturbed noise" not in exact.output and "exact (not for release)" in exact.output


def test_trust_pin_with_a_wrong_fingerprint_never_prints_the_real_one(node_dir, tmp_path):
    auth = Authority.create(tmp_path / "auth", b"pin test passphrase", federation="pin-test")
    cert = tmp_path / "root.pem"
    cert.write_bytes(auth.root_cert_pem)
    wrong = run("node", "trust", "pin", cert, "--fingerprint", "ab" * 32, "-n", node_dir)
    assert wrong.exit_code == 1
    lines = wrong.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not have the fingerprint you gave; nothing was pinned" in lines[0]
    real = auth.root.fingerprint
    for form in (real, real.upper(), ":".join(real[i:i + 2] for i in range(0, len(real), 2))):
        assert form not in wrong.output
    assert run("node", "trust", "status", "-n", node_dir).exit_code == 4  # still not pinned
    right = run("node", "trust", "pin", cert, "--fingerprint", real, "-n", node_dir)
    assert right.exit_code == 0 and right.output.strip() == f"pinned federation root {real}"


def test_counts_are_worded_for_people_not_as_entr_ies():
    from oncofed.node.audit_verify import VerifyReport

    one = VerifyReport(ok=True, entries=1, checkpoints=1, signatures="verified", signed_through=1,
                       recorded_head=1).summary().splitlines()
    assert one[:2] == ["intact: 1 entry, chain unbroken, ending at the node's recorded head (entry 1)",
                       "  checkpoints: 1 checkpoint, signatures verified; signed through entry 1, "
                       "0 entries after it unsigned"]
    one = "\n".join(one)
    many = VerifyReport(ok=True, entries=7, checkpoints=2, signatures="verified", signed_through=6).summary()
    assert "7 entries" in many and "2 checkpoints, signatures verified; signed through entry 6, 1 entry after" in many
    assert "(s)" not in one + many and "(ies)" not in one + many
