"""Flower's deployment engine as processes we own: a SuperLink for the hub operator, a SuperNode
for each centre — started, watched, and stopped with nothing left running.

Process management only: no crypto (key files come made by `oncofed.keys.flower_auth`), no
Flower imports (Flower is driven through its own commands, its stable interface).

Pinned against flwr 1.42 (`flower-superlink --help`, `flower-supernode --help`, the wheel's source,
and runs here):
- The SuperLink serves Fleet, Control and Runtime APIs over **one HTTPS port** (`--host`,
  `--port`, uvicorn); `--ssl-ca-certfile --ssl-certfile --ssl-keyfile` (server TLS only: nodes
  authenticate with their keys, not certificates); `--enable-supernode-auth` needs TLS (exit 104
  otherwise); `--database FILE` keeps runs and registered nodes across restarts (without it a
  restart forgets every node); `--disable-runtime-dependency-installation` stops it running
  `uv sync` on an app's dependencies. It starts `flower-superexec` **by name from PATH**, in a new
  session, which exits once its parent is gone; the SuperExec starts `flwr-serverapp` per run.
- The SuperNode connects outbound only (`--superlink host:port`, `--root-certificates`) and opens
  a loopback port for its ClientApp processes (`--port`, default 9094: one per node on a machine).
  It logs `SuperNode ID: <n>` once the SuperLink accepted it; an unregistered key logs
  `Exit Code: 305` and the process ends (within ≈ 4 s here); it retries forever when the SuperLink
  is down (`--max-retries` caps that). `--node-config 'k="v"'` reaches `context.node_config`.
- SIGTERM shuts both down gracefully in ≈ 1–6 s (their SuperExec children follow their parent).
- Flower reads `FLWR_HOME` (default ~/.flwr; installed apps go to `$FLWR_HOME/apps`), and calls
  home unless `FLWR_TELEMETRY_ENABLED=0` and `FLWR_DISABLE_UPDATE_CHECK=1`.

Each process has a directory holding `<name>.pid` (JSON: pid, start time, command), `logs/<name>.log`
and its Flower home; `down` trusts a PID file only when that pid still runs the same command.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from oncofed.errors import OncofedError

SUPERLINK, SUPERNODE = "superlink", "supernode"
DEFAULT_SUPERLINK_PORT = 9092
DEFAULT_CLIENTAPP_PORT = 9094
QUIET_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
_NODE_ID = re.compile(r"SuperNode ID: (\d+)")
_EXIT_CODE = re.compile(r"Exit Code: (\d+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Flower exit codes we explain in our own words (flwr/supercore/exit/exit_code.py, 1.42).
EXIT_REASONS = {
    "104": "the SuperLink refused its arguments",
    "302": "the SuperNode key could not be read (an unencrypted OpenSSH ECDSA key is needed)",
    "303": "SuperNode authentication needs TLS",
    "305": "the SuperLink refused this SuperNode (is its public key registered with "
           "`oncofed hub flower register`?)",
    "604": "a TLS file path is wrong",
    "605": "the TLS certificate or key is unusable",
}


class FlowerError(OncofedError):
    """Flower's deployment engine did not do what was asked; the message says what to check."""


class FlowerDown(FlowerError):
    """No SuperLink answers at the address (not started, stopped, or a wrong address)."""


class SupernodeRefused(FlowerError):
    """The SuperLink did not accept this SuperNode (unregistered key, TLS mismatch)."""


def flower_env(home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for Flower's processes: our interpreter's bin first on PATH (the SuperLink
    finds `flower-superexec` there), a private FLWR_HOME, and no calls home."""
    env = dict(os.environ if base is None else base)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, *[p for p in env.get("PATH", "").split(os.pathsep) if p and p != bindir]])
    env["FLWR_HOME"] = str(home)
    env.update(QUIET_ENV)
    return env


def executable(name: str) -> str:
    """The path of Flower's command `name` next to our interpreter (the same environment, so the
    same flwr), else on PATH; a clear error when flwr is not installed."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if folder and (Path(folder) / name).exists():
            return str(Path(folder) / name)
    raise FlowerError(f"{name} not found: install oncofed with flwr 1.42 in this environment")


def check_address(host: str, port: int) -> str:
    """`host:port` for Flower's arguments; refuses what it would misparse."""
    if not host or any(c.isspace() for c in host) or "/" in host:
        raise FlowerError(f"not a host name or address: {host!r}")
    if not 1 <= port <= 65535:
        raise FlowerError(f"port must be 1 to 65535, not {port}")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _toml_string(value: str, what: str) -> str:
    if any(c in value for c in '"\\\n\r'):
        raise FlowerError(f"{what} may not contain quotes, backslashes or line breaks: {value!r}")
    return f'"{value}"'


@dataclass(frozen=True)
class SuperLinkSpec:
    """A SuperLink for the hub: its state directory, address and TLS files (issued by the
    federation root; `key` unencrypted — see oncofed.keys.flower_auth.superlink_tls_key)."""

    directory: Path
    cert: Path
    key: Path
    root_cert: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_SUPERLINK_PORT
    supernode_auth: bool = True

    @property
    def address(self) -> str:
        return check_address(self.host, self.port)

    @property
    def database(self) -> Path:
        return self.directory / "superlink.db"

    def command(self) -> list[str]:
        """The `flower-superlink` command line (every flag pinned in the module docstring)."""
        check_address(self.host, self.port)
        argv = [executable("flower-superlink"),
                "--ssl-ca-certfile", str(self.root_cert), "--ssl-certfile", str(self.cert),
                "--ssl-keyfile", str(self.key), "--database", str(self.database),
                "--disable-runtime-dependency-installation",
                "--host", self.host, "--port", str(self.port)]
        if self.supernode_auth:
            argv.append("--enable-supernode-auth")
        return argv


@dataclass(frozen=True)
class SuperNodeSpec:
    """A centre's SuperNode: its state directory, the SuperLink it dials, the federation root it
    trusts for that TLS connection, its authentication key, the node directory its ClientApp
    reads (`context.node_config["node-dir"]`) and the loopback port for its ClientApp processes."""

    directory: Path
    superlink: str
    root_cert: Path
    auth_key: Path | None
    node_dir: Path
    port: int = DEFAULT_CLIENTAPP_PORT
    max_retries: int | None = None
    extra_config: Mapping[str, str] = field(default_factory=dict)

    def node_config(self) -> str:
        """Flower's `--node-config` text: space-separated `key="value"` pairs."""
        items = {"node-dir": str(self.node_dir), **self.extra_config}
        for key in items:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key):
                raise FlowerError(f"not a node-config key: {key!r}")
        return " ".join(f"{k}={_toml_string(v, k)}" for k, v in items.items())

    def command(self) -> list[str]:
        argv = [executable("flower-supernode"), "--superlink", self.superlink,
                "--root-certificates", str(self.root_cert), "--node-config", self.node_config(),
                "--host", "127.0.0.1", "--port", check_address("127.0.0.1", self.port).rsplit(":", 1)[1]]
        if self.auth_key is not None:
            argv += ["--auth-supernode-private-key", str(self.auth_key)]
        if self.max_retries is not None:
            argv += ["--max-retries", str(self.max_retries)]
        return argv


# --- processes -----------------------------------------------------------------------------------

def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time in clock ticks) from /proc, or None when gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = raw[raw.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[19])


def _alive(pid: int, start: int | None = None) -> bool:
    if not Path("/proc").is_dir():                       # not Linux: the signal test only
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X") and (start is None or st[2] == start)


def descendants(pid: int) -> dict[int, int]:
    """Every process below `pid` (pid → start time), from /proc; empty where there is none."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").glob("[0-9]*") if Path("/proc").is_dir() else ():
        st = _stat(int(entry.name))
        if st is not None:
            children.setdefault(st[1], []).append((int(entry.name), st[2]))
    found: dict[int, int] = {}
    todo = [pid]
    while todo:
        for child, start in children.get(todo.pop(), ()):
            if child not in found:
                found[child] = start
                todo.append(child)
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


@dataclass
class FlowerProcess:
    """A Flower process we started (or found by its PID file): stop it and everything below it."""

    name: str
    pid: int
    start: int | None
    directory: Path
    argv: list[str]
    popen: subprocess.Popen[bytes] | None = None
    seen: dict[int, int] = field(default_factory=dict)   # every descendant observed, for stop()

    @property
    def log_path(self) -> Path:
        return self.directory / "logs" / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        return self.directory / f"{self.name}.pid"

    def alive(self) -> bool:
        if self.popen is not None and self.popen.poll() is not None:
            return False
        return _alive(self.pid, self.start)

    def watch(self) -> None:
        """Remember the processes below this one now, so stop() still finds them once they have
        been re-parented (the SuperExec and ClientApps run in sessions of their own)."""
        if self.alive():
            self.seen.update(descendants(self.pid))

    def all_pids(self) -> dict[int, int | None]:
        return {self.pid: self.start, **self.seen}

    def stop(self, grace: float = 10.0, orphan_grace: float = 3.0) -> None:
        """SIGTERM, up to `grace` seconds for a clean exit, then SIGKILL; then every descendant
        seen gets `orphan_grace` seconds to end on its own (Flower's children watch their
        parent), then SIGTERM, then SIGKILL."""
        self.watch()
        if self.alive():
            _signal(self.pid, signal.SIGTERM)
            if not self._wait([self.pid], grace):
                _signal(self.pid, signal.SIGKILL)
                self._wait([self.pid], 5)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=5)
        rest = [p for p, s in self.seen.items() if _alive(p, s)]
        if rest and not self._wait(rest, orphan_grace):
            for p in rest:
                if _alive(p, self.seen[p]):
                    _signal(p, signal.SIGTERM)
            if not self._wait(rest, orphan_grace):
                for p in rest:
                    if _alive(p, self.seen[p]):
                        _signal(p, signal.SIGKILL)
                self._wait(rest, 3)
        if self.pid_path.exists() and _read_pidfile(self.pid_path) in (None, self.pid):
            self.pid_path.unlink(missing_ok=True)

    def _wait(self, pids: Iterable[int], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        pids = list(pids)
        while True:
            if self.popen is not None:
                self.popen.poll()                          # reap our own child so it is not a zombie
            if not any(_alive(p, self.start if p == self.pid else self.seen.get(p)) for p in pids):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                return _ANSI.sub("", fh.read().decode("utf-8", "replace"))
        except FileNotFoundError:
            return ""

    def last_line(self, offset: int = 0) -> str:
        lines = [ln.strip() for ln in self.log_since(offset).splitlines() if ln.strip()]
        return lines[-1] if lines else "(no output)"


def _read_pidfile(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def spawn(name: str, argv: list[str], directory: Path, env: Mapping[str, str]) -> tuple[FlowerProcess, int]:
    """Start `argv` in a session of its own (it outlives the command that started it, and a
    terminal's Ctrl-C does not reach it), output appended to logs/<name>.log, PID file written.
    Returns the process and the log offset its output starts at. Refuses to start a second one."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / "logs").mkdir(mode=0o700, exist_ok=True)
    running = find(directory, name)
    if running is not None:
        raise FlowerError(f"a {name} is already running from {directory} (pid {running.pid}); stop it first")
    log_path = directory / "logs" / f"{name}.log"
    with log_path.open("ab") as log:
        offset = log.tell()
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 cwd=directory, env=dict(env), start_new_session=True)
    st = _stat(popen.pid)
    proc = FlowerProcess(name, popen.pid, st[2] if st else None, directory, argv, popen)
    tmp = proc.pid_path.with_suffix(".pid.tmp")
    tmp.write_text(json.dumps({"pid": proc.pid, "start": proc.start, "argv": argv}))
    os.replace(tmp, proc.pid_path)
    return proc, offset


def find(directory: Path, name: str) -> FlowerProcess | None:
    """The process a PID file names, if that pid still runs the command the file records (a pid
    reused by another program is never signalled); a stale PID file is removed."""
    path = Path(directory) / f"{name}.pid"
    try:
        data = json.loads(path.read_text())
        pid, start, argv = int(data["pid"]), data.get("start"), list(data["argv"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return None
    if not _alive(pid, start) or not _same_command(pid, argv):
        path.unlink(missing_ok=True)
        return None
    return FlowerProcess(name, pid, start, Path(directory), argv)


def _same_command(pid: int, argv: list[str]) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return not Path("/proc").is_dir()
    return Path(argv[0]).name.encode() in b" ".join(cmdline) and all(a.encode() in cmdline for a in argv[1:])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _failure(proc: FlowerProcess, offset: int) -> str:
    text = proc.log_since(offset)
    codes = _EXIT_CODE.findall(text)
    if codes and codes[-1] in EXIT_REASONS:
        return EXIT_REASONS[codes[-1]]
    return f"exited early; last log line: {proc.last_line(offset)} (see {proc.log_path})"


def start_superlink(spec: SuperLinkSpec, *, timeout: float = 60.0,
                    env: Mapping[str, str] | None = None) -> FlowerProcess:
    """Start the SuperLink and return once its port accepts connections (the HTTPS server binds
    after its state and SuperExec are up). A port already taken is refused before starting."""
    for f in (spec.cert, spec.key, spec.root_cert):
        if not Path(f).is_file():
            raise FlowerError(f"TLS file not found: {f}")
    if port_open(spec.host, spec.port):
        raise FlowerError(f"{spec.address} is already in use; choose another [flower] listen port")
    spec.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    proc, offset = spawn(SUPERLINK, spec.command(), spec.directory,
                         env if env is not None else flower_env(spec.directory / "home"))
    deadline = time.monotonic() + timeout
    while not port_open(spec.host, spec.port):
        if not proc.alive():
            proc.stop(0)
            raise FlowerError(f"the SuperLink did not start: {_failure(proc, offset)}")
        if time.monotonic() > deadline:
            proc.stop()
            raise FlowerError(f"the SuperLink did not open {spec.address} within {timeout:.0f} s (see {proc.log_path})")
        time.sleep(0.1)
    proc.watch()
    return proc


def start_supernode(spec: SuperNodeSpec, *, timeout: float = 60.0,
                    env: Mapping[str, str] | None = None) -> tuple[FlowerProcess, int]:
    """Start a SuperNode and return it with its Flower node id once the SuperLink accepted it
    (its log says `SuperNode ID: n`); a refusal (unregistered key, TLS) stops it and says why."""
    if port_open("127.0.0.1", spec.port):
        raise FlowerError(f"ClientApp port 127.0.0.1:{spec.port} is already in use; give this SuperNode another --port")
    proc, offset = spawn(SUPERNODE, spec.command(), spec.directory,
                         env if env is not None else flower_env(spec.directory / "home"))
    deadline = time.monotonic() + timeout
    while True:
        text = proc.log_since(offset)
        if (m := _NODE_ID.search(text)) is not None:
            proc.watch()
            return proc, int(m.group(1))
        code = _EXIT_CODE.search(text)
        if code is not None or not proc.alive():
            reason = _failure(proc, offset)
            proc.stop(2)
            cls = SupernodeRefused if code is not None and code.group(1) in ("303", "305") else FlowerError
            raise cls(f"the SuperNode did not join the SuperLink at {spec.superlink}: {reason}")
        if time.monotonic() > deadline:
            proc.stop()
            raise FlowerDown(f"the SuperNode could not reach a SuperLink at {spec.superlink} within "
                             f"{timeout:.0f} s (is it up? see {proc.log_path})")
        time.sleep(0.2)
