"""The command line and the generated contracts: every command documented, generated code
current, the dictionary loadable and shown."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from oncofed import dictionary as dictmod
from oncofed.cli import main


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


def test_every_command_has_help_text():
    missing = [" ".join(path) for path, cmd in _commands(main) if not (cmd.help or "").strip()]
    assert not missing, f"commands without help: {missing}"
    runner = CliRunner()
    for path, _ in _commands(main):
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)


def test_generated_protobuf_code_is_current():
    pytest.importorskip("grpc_tools")
    out = subprocess.run([sys.executable, "-m", "oncofed.protogen", "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dictionary_show_json_lists_every_field_with_codes():
    result = CliRunner().invoke(main, ["dictionary", "show", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    names = [f["name"] for f in data["fields"]]
    assert names == list(dictmod.load().fields)
    sex = next(f for f in data["fields"] if f["name"] == "sex")
    assert sex["codes"] == {"1": "male", "2": "female", "9": "unknown"}
    assert data["version"] == "1.0.0"


def test_dictionary_show_with_extension_and_text_output():
    ext = dictmod.bundled_extensions()[0]
    result = CliRunner().invoke(main, ["dictionary", "show", "--extension", str(ext), "--field", "tumour_size_mm"])
    assert result.exit_code == 0
    assert "tumour_size_mm" in result.output and "[mm]" in result.output and "extension" in result.output


def test_extension_may_not_redefine_core_fields(tmp_path):
    bad = tmp_path / "ext.toml"
    bad.write_text('[extension]\nname = "x"\nversion = "1"\n'
                   '[[field]]\nname = "sex"\ntype = "integer"\ndescription = "d"\n')
    with pytest.raises(dictmod.DictionaryError, match="already exists"):
        dictmod.load(bad)
    result = CliRunner().invoke(main, ["dictionary", "show", "--extension", str(bad)])
    assert result.exit_code == 2 and "already exists" in result.output


def test_extension_hash_identifies_the_file(tmp_path):
    ext = dictmod.bundled_extensions()[0]
    a = dictmod.load(ext)
    copy = tmp_path / "e.toml"
    copy.write_bytes(ext.read_bytes() + b"\n")
    b = dictmod.load(copy)
    assert a.extension_sha256 != b.extension_sha256 and a.fields.keys() == b.fields.keys()


def test_cli_error_is_one_line_with_nonzero_exit(tmp_path):
    out = subprocess.run([sys.executable, "-m", "oncofed", "node", "status", "-n", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("error: ")


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ('name = "x; DROP TABLE tumours"\ntype = "integer"', "must be letters"),
        ('name = "colour"\ntype = "code"\n[field.codes]\n"red\'" = "r"', "not plain tokens"),
        ('name = "colour"\ntype = "colour"', "unknown type"),
    ],
)
def test_extension_names_and_codes_must_be_plain_tokens(tmp_path, field, message):
    bad = tmp_path / "ext.toml"
    bad.write_text(f'[extension]\nname = "x"\nversion = "1"\n[[field]]\ndescription = "d"\n{field}\n')
    with pytest.raises(dictmod.DictionaryError, match=message):
        dictmod.load(bad)
