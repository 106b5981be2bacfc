"""Flower's `flwr` command, driven with a private connection profile: register SuperNodes, list
nodes and runs, submit a run and wait for its real outcome.

Pinned against flwr 1.42 (read from `flwr/cli/`, run here):
- Connection profiles live in `$FLWR_HOME/config.toml` as `[superlink.<name>]` with `address` and
  `root-certificates` (and `[superlink] default`); we write one profile, `oncofed`, in a folder of
  our own, so a user's ~/.flwr is neither read nor changed.
- With `--format json` every command prints one JSON object and **exits 0 even on failure**:
  `{"success": false, "error-message": "…"}` — so success is read from the JSON, never from the
  exit code. `flwr run` returns at once with `run-id`; the run's outcome is its status in
  `flwr ls --run-id N --format json` (`finished:completed`, `finished:failed` with
  `status-details`, `finished:stopped`; `pending`, `starting`, `running` before).
- `flwr log N --stream` follows a run's logs and ends when the run does; one such process replaces
  polling `flwr ls`, each call of which costs ≈ 2 s of CPU here.
- `--run-config FILE.toml` overrides `[tool.flwr.app.config]`; a key the app does not declare is
  refused ("Invalid run configuration"), so the FAB declares every key we send (oncofed.flower.fab).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oncofed.flower.deploy import FlowerDown, FlowerError, executable, flower_env

PROFILE = "oncofed"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CODE = re.compile(r"^\[code: \d+\]\s*")


class RunFailed(FlowerError):
    """The Flower run ended, but not as completed (failed or stopped)."""


@dataclass(frozen=True)
class RunStatus:
    run_id: int
    status: str
    details: str
    elapsed: float

    @property
    def finished(self) -> bool:
        return self.status.startswith("finished")

    @property
    def completed(self) -> bool:
        return self.status == "finished:completed"


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(str(v))                  # a JSON string is a valid TOML basic string


def toml_table(values: Mapping[str, object]) -> str:
    """Flat key/value TOML (keys quoted, so dots stay inside a key), for run configs and profiles."""
    return "".join(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in values.items())


def _message(text: str) -> str:
    """Flower's error text without its preamble ("Using SuperLink …") and code tag: one line."""
    lines = [_ANSI.sub("", ln).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("Using SuperLink", "Listing", "Displaying",
                                                             "Flower App configuration", "- Recommended"))]
    return _CODE.sub("", lines[-1]) if lines else "no details"


class FlowerCli:
    """`flwr` against one SuperLink, through a profile in `home/config.toml` (written here)."""

    def __init__(self, home: Path, address: str, root_cert: Path, *, timeout: float = 60.0) -> None:
        self.home, self.address, self.timeout = Path(home), address, timeout
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        profile = {"address": address, "root-certificates": str(Path(root_cert).resolve())}
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{PROFILE}"\n\n[superlink.{PROFILE}]\n' + toml_table(profile), "utf-8")
        self.env = flower_env(self.home)

    def command(self, *args: str) -> list[str]:
        return [executable("flwr"), *args]

    def call(self, *args: str, timeout: float | None = None) -> dict[str, Any]:
        """Run `flwr ARGS --format json` and return its JSON; FlowerError with Flower's own reason
        when it says `success: false` (FlowerDown when nothing answers at the address)."""
        argv = self.command(*args, "--format", "json")
        try:
            out = subprocess.run(argv, capture_output=True, text=True, env=self.env,
                                 timeout=timeout or self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise FlowerDown(f"the SuperLink at {self.address} did not answer within "
                             f"{timeout or self.timeout:.0f} s") from None
        start = out.stdout.find("{")
        try:
            data = json.loads(out.stdout[start:]) if start >= 0 else None
        except json.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise FlowerError(f"flwr {args[0]} failed: {_message(out.stderr or out.stdout)}")
        if not data.get("success", False):
            reason = _message(str(data.get("error-message", "")))
            if "unavailable" in reason.lower():
                raise FlowerDown(f"no SuperLink answers at {self.address} (is it up? `oncofed hub flower status`)")
            raise FlowerError(f"flwr {args[0]} failed: {reason}")
        return data

    def register(self, public_key: Path, name: str | None = None) -> int:
        """Register a SuperNode's public key (OpenSSH); returns its Flower node id."""
        args = ["supernode", "register", str(public_key), PROFILE]
        if name:
            args += ["--name", name]
        return int(self.call(*args)["node-id"])

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.call("supernode", "list", PROFILE)["nodes"])

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        args = ["ls", PROFILE] + (["--limit", str(limit)] if limit else [])
        return list(self.call(*args)["runs"])

    def status(self, run_id: int) -> RunStatus:
        runs = self.call("ls", PROFILE, "--run-id", str(run_id))["runs"]
        if not runs:
            raise FlowerError(f"the SuperLink knows no run {run_id}")
        r = runs[0]
        return RunStatus(run_id, str(r["status"]), str(r.get("status-details", "")), float(r.get("elapsed", 0.0)))

    def submit(self, app: Path, run_config: Mapping[str, object]) -> int:
        """Start a run of the app directory `app` with `run_config` (written to a 0600 TOML file
        for the call, since values can be long); returns the run id at once."""
        with tempfile.TemporaryDirectory(prefix="oncofed-run-") as tmp:
            cfg = Path(tmp) / "run-config.toml"
            cfg.write_text(toml_table(run_config), "utf-8")
            cfg.chmod(0o600)
            data = self.call("run", str(app), PROFILE, "--run-config", str(cfg))
        return int(data["run-id"])

    def stop(self, run_id: int) -> None:
        self.call("stop", str(run_id), PROFILE)

    def wait(self, run_id: int, *, timeout: float = 600.0,
             on_line: Callable[[str], None] | None = None) -> RunStatus:
        """Follow the run's logs until it ends (each line to `on_line`), then read its final
        status: a run that did not complete is RunFailed, one past `timeout` is stopped."""
        argv = self.command("log", str(run_id), PROFILE, "--stream")
        deadline = time.monotonic() + timeout
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=self.env, stdin=subprocess.DEVNULL)

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if on_line is not None and (clean := _ANSI.sub("", line).rstrip()):
                    on_line(clean)

        reader = threading.Thread(target=pump, name=f"flwr-log-{run_id}", daemon=True)
        reader.start()
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=10)
        reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        status = self.status(run_id)
        while not status.finished and time.monotonic() < deadline:
            time.sleep(1.0)
            status = self.status(run_id)
        if not status.finished:
            self.stop(run_id)
            raise RunFailed(f"Flower run {run_id} did not finish within {timeout:.0f} s; it was stopped")
        if not status.completed:
            why = f": {status.details}" if status.details and status.details != "N/A" else ""
            raise RunFailed(f"Flower run {run_id} {status.status.split(':')[-1]}{why}")
        return status
