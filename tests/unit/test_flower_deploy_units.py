"""The pure parts of the Flower deployment: command lines, node config text, the FAB's
pyproject (checked with Flower's own validator), run-config TOML, Flower's error text, the
SuperNode key files, and PID files that must never name someone else's process."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest

from oncofed.flower import deploy
from oncofed.flower.deploy import FlowerError, SuperLinkSpec, SuperNodeSpec, find, flower_env
from oncofed.flower.fab import pyproject, write_app
from oncofed.flower.flwr_cli import FlowerCli, _message, toml_table
from oncofed.keys.errors import KeyFileError, SecretFileError
from oncofed.keys.flower_auth import (
    load_supernode_key,
    new_supernode_key,
    superlink_tls_key,
    supernode_public_key,
)


def flwr_config():
    """Flower's own config functions (typer, under flwr, warns on import with this click)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from flwr.common import config
    return config


def test_superlink_command_has_tls_database_auth_and_no_runtime_installs(tmp_path):
    spec = SuperLinkSpec(tmp_path / "fl", tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "root.pem", port=9123)
    argv = spec.command()
    assert Path(argv[0]).name == "flower-superlink"
    pairs = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert pairs["--ssl-ca-certfile"] == str(tmp_path / "root.pem")
    assert pairs["--ssl-certfile"] == str(tmp_path / "c.pem") and pairs["--ssl-keyfile"] == str(tmp_path / "k.pem")
    assert pairs["--database"] == str(tmp_path / "fl" / "superlink.db")
    assert "--enable-supernode-auth" in argv and "--disable-runtime-dependency-installation" in argv
    assert "--insecure" not in argv
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "9123"
    assert spec.address == "127.0.0.1:9123"
    assert "--enable-supernode-auth" not in SuperLinkSpec(tmp_path, tmp_path, tmp_path, tmp_path,
                                                          supernode_auth=False).command()
    assert SuperLinkSpec(tmp_path, tmp_path, tmp_path, tmp_path, host="::1", port=1).address == "[::1]:1"
    with pytest.raises(FlowerError, match="port"):
        SuperLinkSpec(tmp_path, tmp_path, tmp_path, tmp_path, port=70000).command()


def test_supernode_command_and_node_config(tmp_path):
    spec = SuperNodeSpec(tmp_path / "sn", "127.0.0.1:9092", tmp_path / "root.pem", tmp_path / "k", tmp_path / "node a",
                         port=9200, extra_config={"centre": "centre-a"})
    argv = spec.command()
    assert Path(argv[0]).name == "flower-supernode"
    assert argv[argv.index("--superlink") + 1] == "127.0.0.1:9092"
    assert argv[argv.index("--root-certificates") + 1] == str(tmp_path / "root.pem")
    assert argv[argv.index("--auth-supernode-private-key") + 1] == str(tmp_path / "k")
    assert argv[argv.index("--port") + 1] == "9200" and argv[argv.index("--host") + 1] == "127.0.0.1"
    text = argv[argv.index("--node-config") + 1]
    assert text == f'node-dir="{tmp_path / "node a"}" centre="centre-a"'
    # Flower parses it as TOML pairs: the path with its space comes back whole
    assert flwr_config().parse_config_args([text]) == {"node-dir": str(tmp_path / "node a"), "centre": "centre-a"}
    assert "--auth-supernode-private-key" not in SuperNodeSpec(tmp_path, "h:1", tmp_path, None, tmp_path).command()
    for bad in ('a"b', "a\\b", "a\nb"):
        with pytest.raises(FlowerError, match="quotes"):
            SuperNodeSpec(tmp_path, "h:1", tmp_path, None, Path(bad)).command()
    with pytest.raises(FlowerError, match="node-config key"):
        SuperNodeSpec(tmp_path, "h:1", tmp_path, None, tmp_path, extra_config={"a b": "x"}).command()


def test_flower_env_puts_our_bin_first_and_turns_off_calls_home(tmp_path):
    env = flower_env(tmp_path / "home", {"PATH": "/usr/bin:/bin", "FLWR_TELEMETRY_ENABLED": "1"})
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["FLWR_HOME"] == str(tmp_path / "home")
    assert env["FLWR_TELEMETRY_ENABLED"] == "0" and env["FLWR_DISABLE_UPDATE_CHECK"] == "1"


def test_fab_pyproject_passes_flowers_validator_and_declares_every_run_config_key(tmp_path):
    config = {"analysis": "abc", "rounds": 3, "tolerance": 1e-9, "verbose": True}
    text = pyproject(config)
    parsed = tomllib.loads(text)
    fc = flwr_config()
    ok, errors, _ = fc.validate_config(parsed, check_module=False)
    assert ok, errors
    app = parsed["tool"]["flwr"]["app"]
    assert app["publisher"] == "oncofed"
    assert app["components"] == {"serverapp": "oncofed.flower.serverapp:app",
                                 "clientapp": "oncofed.flower.clientapp:app"}
    assert app["config"] == {"analysis": "", "rounds": 0, "tolerance": 0.0, "verbose": False}
    assert fc.fuse_dicts(app["config"], config) == config          # every key we send may override
    with pytest.raises(ValueError, match="not present"):
        fc.fuse_dicts(app["config"], {"other": "x"})
    with pytest.raises(FlowerError, match="component"):
        pyproject({}, serverapp="no colon")
    with pytest.raises(FlowerError, match="must be str"):
        pyproject({"x": [1]})
    d = write_app(tmp_path / "app", {"a": "b"}, files={"m.py": "x = 1\n"})
    assert sorted(p.name for p in d.iterdir()) == ["m.py", "pyproject.toml"]
    with pytest.raises(FlowerError):
        write_app(tmp_path / "app2", {}, files={"../evil.py": ""})


def test_run_config_toml_round_trips_long_and_awkward_strings():
    values = {"a.b": 'quote " and \\ and\nnewline', "n": 7, "f": 0.25, "t": True, "blob": "x" * 100_000}
    assert tomllib.loads(toml_table(values)) == values


def test_flwr_cli_profile_is_private_and_names_the_root(tmp_path):
    cli = FlowerCli(tmp_path / "home", "127.0.0.1:9092", tmp_path / "root.pem")
    profile = tomllib.loads((tmp_path / "home" / "config.toml").read_text())
    assert profile["superlink"]["default"] == "oncofed"
    assert profile["superlink"]["oncofed"] == {"address": "127.0.0.1:9092",
                                               "root-certificates": str((tmp_path / "root.pem").resolve())}
    assert cli.env["FLWR_HOME"] == str(tmp_path / "home")
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700


def test_flower_error_text_becomes_one_line():
    assert _message("Using SuperLink: oncofed (127.0.0.1:1)\n Listing all runs...\n\n"
                    "[code: 16] Run ID not found.") == "Run ID not found."
    assert _message("\x1b[91mboom\x1b[0m\n") == "boom"
    assert _message("") == "no details"


def test_supernode_key_pair_is_openssh_p384_private_0600_and_never_overwritten(tmp_path):
    made = new_supernode_key(tmp_path / "keys")
    assert stat.S_IMODE(made.private_path.stat().st_mode) == 0o600
    assert made.private_path.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert made.public_path.read_text().startswith("ecdsa-sha2-nistp384 ")
    assert made.fingerprint.startswith("SHA256:") and supernode_public_key(made.public_path) == made.fingerprint
    assert load_supernode_key(tmp_path / "keys") == made
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        new_supernode_key(tmp_path / "keys")
    # ssh-keygen agrees on the fingerprint when it is installed
    keygen = subprocess.run(["ssh-keygen", "-lf", str(made.public_path)], capture_output=True, text=True,
                            check=False) if any((Path(p) / "ssh-keygen").exists()
                                                for p in os.environ.get("PATH", "").split(os.pathsep)) else None
    if keygen is not None and keygen.returncode == 0:
        assert made.fingerprint in keygen.stdout
    made.private_path.chmod(0o644)
    with pytest.raises(SecretFileError, match="accessible by other users"):
        load_supernode_key(tmp_path / "keys")


def test_supernode_public_key_refuses_what_flower_would_refuse(tmp_path):
    other = tmp_path / "other.pub"
    other.write_text("-----BEGIN CERTIFICATE-----\nabc\n")
    with pytest.raises(KeyFileError, match="not an OpenSSH public key"):
        supernode_public_key(other)
    with pytest.raises(KeyFileError, match="cannot read"):
        supernode_public_key(tmp_path / "missing.pub")
    a, b = new_supernode_key(tmp_path / "a"), new_supernode_key(tmp_path / "b")
    b.public_path.write_bytes(a.public_path.read_bytes())            # a public key that is not ours
    with pytest.raises(KeyFileError, match="not the public half"):
        load_supernode_key(tmp_path / "b")


def test_superlink_tls_key_is_used_in_place_when_clear_and_copied_0600_when_encrypted(tmp_path):
    from oncofed.keys.tls import new_member_tls_key

    clear, _ = new_member_tls_key(tmp_path / "clear", "hub", "hub")
    assert superlink_tls_key(clear, tmp_path / "run") == clear
    sealed, _ = new_member_tls_key(tmp_path / "sealed", "hub", "hub", passphrase=b"pass phrase")
    copy = superlink_tls_key(sealed, tmp_path / "run", b"pass phrase")
    assert copy.parent == tmp_path / "run" and "cleartext" in copy.name
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600 and b"ENCRYPTED" not in copy.read_bytes()
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        superlink_tls_key(sealed, tmp_path / "run", b"wrong")


def test_pid_file_of_a_dead_or_different_process_is_not_trusted(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "superlink.pid").write_text(json.dumps({"pid": p.pid, "start": None,
                                                            "argv": ["flower-superlink", "--port", "1"]}))
        assert find(tmp_path, "superlink") is None                    # the pid runs python -c, not that
        assert not (tmp_path / "superlink.pid").exists()
        (tmp_path / "x.pid").write_text(json.dumps({"pid": p.pid, "start": None,
                                                    "argv": [sys.executable, "-c", "import time; time.sleep(30)"]}))
        found = find(tmp_path, "x")
        assert found is not None and found.pid == p.pid
    finally:
        p.kill()
        p.wait()
    assert find(tmp_path, "x") is None and not (tmp_path / "x.pid").exists()
    (tmp_path / "y.pid").write_text("not json")
    assert find(tmp_path, "y") is None


def test_stop_ends_a_process_tree_term_then_kill(tmp_path):
    # a parent that ignores SIGTERM with a child in its own session, like Flower's SuperExec
    code = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True); "
            "print('ready', flush=True); time.sleep(60)")
    proc, offset = deploy.spawn("tree", [sys.executable, "-c", code], tmp_path, dict(os.environ))
    for _ in range(100):
        proc.watch()
        if proc.seen and "ready" in proc.log_since(offset):
            break
        import time
        time.sleep(0.05)
    assert proc.seen, "the child was seen"
    proc.stop(grace=0.5, orphan_grace=0.2)
    assert not any(deploy._alive(pid, start) for pid, start in proc.all_pids().items())
    assert not proc.pid_path.exists()
