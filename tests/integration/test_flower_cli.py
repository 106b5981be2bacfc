"""The operator's and the centre admin's Flower commands as real processes: `oncofed hub flower
up | status | register | down` over a hub.toml, `oncofed node flower key | serve` over a node
directory — a registered centre joins, an unregistered one is refused in one line, SIGTERM stops
a SuperNode, `down` stops the SuperLink, and nothing is left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flower_deploy_world import REPO, free_port
from flower_world import enable_flower
from node_fed_helpers import make_fed

from oncofed.flower.deploy import SUPERLINK, SUPERNODE, _alive, descendants, find
from oncofed.node.node import init_node

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def oncofed(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oncofed", *args], capture_output=True, text=True, env=_env(),
                          timeout=timeout, check=False)


def hub_toml(base: Path, fed, port: int) -> Path:
    path = base / "hub.toml"
    path.write_text(
        f'[hub]\nid = "hub"\nlisten = "127.0.0.1:{free_port()}"\n\n[credentials]\n'
        f'identity_key = "{base / "unused-identity.key"}"\ntls_key = "{fed.tls_keys["hub"]}"\n'
        f'cert = "{fed.cert_path("hub", "hub")}"\nroot_cert = "{base / "root.cert.pem"}"\n'
        f'root_fingerprint = "{fed.authority.root.fingerprint}"\n\n[trust]\n'
        f'registry = "{fed.authority.dir / "published" / "registry.bin"}"\n'
        f'revocations = "{fed.authority.dir / "published" / "revocations.bin"}"\n\n'
        f'[flower]\nlisten = "127.0.0.1:{port}"\ndirectory = "hub-flower"\n', "utf-8")
    return path


def researcher_toml(base: Path, fed) -> Path:
    from oncofed.keys.keystore import save_identity

    folder = base / "identity-res-1"
    folder.mkdir()
    key = save_identity(fed.identities["res-1"], folder)[0]
    path = base / "researcher.toml"
    path.write_text(
        f'[hub]\naddress = "127.0.0.1:1"\n\n[credentials]\nidentity_key = "{key}"\n'
        f'tls_key = "{fed.tls_keys["res-1"]}"\ncert = "{fed.cert_path("researcher", "res-1")}"\n'
        f'root_cert = "{base / "root.cert.pem"}"\nroot_fingerprint = "{fed.authority.root.fingerprint}"\n', "utf-8")
    return path


def test_hub_and_node_flower_commands_end_to_end(tmp_path):
    fed = make_fed(tmp_path, centres=("centre-a", "centre-b"), researchers=("res-1",))
    fed.enroll("hub", "hub")
    root = tmp_path / "root.cert.pem"
    root.write_bytes(fed.root_pem)
    port = free_port()
    cfg = hub_toml(tmp_path, fed, port)
    nodes = {c: init_node(tmp_path / c, c).root for c in ("centre-a", "centre-b")}
    bare = oncofed("node", "flower", "serve", "-n", str(nodes["centre-a"]), "--superlink", "127.0.0.1:1",
                   "--root-cert", str(root))
    assert bare.returncode == 2 and "needs its identity key" in bare.stderr
    for c, d in nodes.items():
        enable_flower(d, fed, c)
    serving: list[subprocess.Popen[str]] = []
    seen: dict[int, int] = {}
    try:
        off = oncofed("hub", "flower", "status", "-c", str(cfg), "--json")
        assert off.returncode == 0 and json.loads(off.stdout)["running"] is False

        up = oncofed("hub", "flower", "up", "-c", str(cfg), "--json")
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        assert info["address"] == f"127.0.0.1:{port}" and info["supernode_auth"] is True
        assert Path(info["database"]) == tmp_path / "hub-flower" / "superlink.db"
        link = find(tmp_path / "hub-flower", SUPERLINK)
        assert link is not None and link.pid == info["pid"]
        seen.update({link.pid: link.start, **descendants(link.pid)})
        again = oncofed("hub", "flower", "up", "-c", str(cfg))
        assert again.returncode != 0 and "already running" in again.stderr and again.stderr.count("\n") == 1

        keys = {}
        for c, d in nodes.items():
            made = oncofed("node", "flower", "key", "-n", str(d), "--json")
            assert made.returncode == 0, made.stderr
            keys[c] = json.loads(made.stdout)
        twice = oncofed("node", "flower", "key", "-n", str(nodes["centre-a"]))
        assert twice.returncode != 0 and "refusing to overwrite" in twice.stderr

        reg = oncofed("hub", "flower", "register", keys["centre-a"]["public_key"], "--name", "centre-a",
                      "-c", str(cfg), "--json")
        assert reg.returncode == 0, reg.stderr
        assert json.loads(reg.stdout)["fingerprint"] == keys["centre-a"]["fingerprint"]
        bad = oncofed("hub", "flower", "register", str(root), "-c", str(cfg))
        assert bad.returncode != 0 and "not an OpenSSH public key" in bad.stderr and bad.stderr.count("\n") == 1

        argv = [sys.executable, "-m", "oncofed", "node", "flower", "serve", "-n", str(nodes["centre-a"]),
                "--superlink", f"127.0.0.1:{port}", "--root-cert", str(root), "--port", str(free_port())]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        serving.append(proc)
        assert proc.stdout is not None
        joined = proc.stdout.readline()
        assert "SuperNode joined" in joined, joined + (proc.stderr.read() if proc.poll() is not None else "")
        sn = find(tmp_path / "centre-a" / "flower", SUPERNODE)
        assert sn is not None
        seen.update({sn.pid: sn.start, **descendants(sn.pid)})

        report = json.loads(oncofed("hub", "flower", "status", "-c", str(cfg), "--json").stdout)
        assert report["running"] and [n["status"] for n in report["nodes"]] == ["online"]
        text = oncofed("hub", "flower", "status", "-c", str(cfg))
        assert "SuperLink running on" in text.stdout and "1 SuperNode registered" in text.stdout

        stranger = oncofed("node", "flower", "serve", "-n", str(nodes["centre-b"]), "--superlink",
                           f"127.0.0.1:{port}", "--root-cert", str(root), "--port", str(free_port()))
        assert stranger.returncode != 0 and stranger.stderr.count("\n") == 1, stranger.stderr
        assert "refused this SuperNode" in stranger.stderr
        assert find(tmp_path / "centre-b" / "flower", SUPERNODE) is None

        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "stopped" in out

        down = oncofed("hub", "flower", "down", "-c", str(cfg), "--json")
        assert down.returncode == 0 and json.loads(down.stdout) == {"stopped": True}
        late = oncofed("hub", "flower", "register", keys["centre-b"]["public_key"], "-c", str(cfg), "--json")
        assert late.returncode != 0 and "not running" in json.loads(late.stdout)["error"]
        gone = oncofed("node", "flower", "serve", "-n", str(nodes["centre-a"]), "--superlink", f"127.0.0.1:{port}",
                       "--root-cert", str(root), "--port", str(free_port()), "--timeout", "8")
        assert gone.returncode != 0 and "could not reach a SuperLink" in gone.stderr

        # the researcher's run against a SuperLink that is down: one line, exit != 0
        researcher = researcher_toml(tmp_path, fed)
        model = tmp_path / "cox.toml"
        model.write_text('model = { cox = { outcome = "OS", cutoff = "2025-12-31", '
                         'covariates = ["age_at_incidence"] } }\n'
                         f'targets = ["centre-a", "centre-b"]\npermit = "{"ab" * 32}"\n', "utf-8")
        registry = fed.authority.dir / "published" / "registry.bin"
        refused = oncofed("analyse", "flower", str(model), "-c", str(researcher), "--superlink",
                          f"127.0.0.1:{port}", "--registry", str(registry))
        assert refused.returncode != 0 and refused.stderr.count("\n") == 1, refused.stderr
        assert "no SuperLink answers" in refused.stderr
        as_json = oncofed("analyse", "flower", str(model), "-c", str(researcher), "--superlink",
                          f"127.0.0.1:{port}", "--registry", str(tmp_path / "missing.bin"), "--json")
        assert as_json.returncode == 2 and "cannot read the registry" in json.loads(as_json.stdout)["error"]
    finally:
        for p in serving:
            if p.poll() is None:
                p.kill()
                p.communicate()
        oncofed("hub", "flower", "down", "-c", str(cfg))
    deadline = time.monotonic() + 20
    while any(_alive(p, s) for p, s in seen.items()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p, s in seen.items() if _alive(p, s)]
