#!/usr/bin/env python3
"""oncofed's one task runner: needs only Python 3.11 and pip, so a fresh machine can run it.

Every task first makes sure `.venv` exists and holds oncofed with the extras it needs, so
`python3 tasks.py demo` and `python3 tasks.py test` are the only two set-up commands a new
user or CI ever types.

    python3 tasks.py demo        synthetic centres, a node, ingest, status and a local summary
    python3 tasks.py test        lint, types, generated-code check, then the whole test suite (fast + slow)
    python3 tasks.py test-fast   the default (fast) suite only
    python3 tasks.py lint        ruff
    python3 tasks.py types       mypy on the oncofed package
    python3 tasks.py protos      regenerate oncofed/v1 from protos/ (grpcio-tools)
    python3 tasks.py bench       benchmarks in bench/, JSON written to bench/results/
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def run(*args: str | Path, env: dict[str, str] | None = None) -> None:
    cmd = [str(a) for a in args]
    print("+", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, cwd=ROOT, env=env)
    if rc != 0:
        sys.exit(rc)


def ensure_venv(extras: str = "dev") -> None:
    """Create .venv and install oncofed[extras] editable; skip when pyproject is unchanged."""
    if sys.version_info < (3, 11):  # noqa: UP036 - tasks.py may be started by an older python3
        sys.exit("oncofed needs Python >= 3.11 (found {}.{})".format(*sys.version_info[:2]))
    stamp = VENV / f".installed-{extras or 'base'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest and PY.exists():
        return
    if not PY.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    run(PY, "-m", "pip", "install", "-q", "--upgrade", "pip")
    spec = f".[{extras}]" if extras else "."
    run(PY, "-m", "pip", "install", "-q", "-e", spec)
    stamp.write_text(digest)


def venv_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    env.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    env.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    return env


def task_lint() -> None:
    ensure_venv()
    run(BIN / "ruff", "check", ".", env=venv_env())


def task_types() -> None:
    ensure_venv()
    run(BIN / "mypy", env=venv_env())


def task_protos() -> None:
    ensure_venv()
    run(PY, "-m", "oncofed.protogen", env=venv_env())


def _pytest(*extra: str) -> None:
    workers = "2" if (os.cpu_count() or 1) >= 2 else "1"
    run(PY, "-m", "pytest", "-n", workers, *extra, env=venv_env())


def task_test_fast() -> None:
    ensure_venv()
    _pytest()


def task_test() -> None:
    ensure_venv()
    run(BIN / "ruff", "check", ".", env=venv_env())
    run(BIN / "mypy", env=venv_env())
    run(PY, "-m", "oncofed.protogen", "--check", env=venv_env())
    _pytest()
    _pytest("-m", "slow")


def task_bench() -> None:
    ensure_venv()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    for script in sorted((ROOT / "bench").glob("*.py")):
        run(PY, script, "--out", out / f"{script.stem}.json", env=venv_env())


def task_demo() -> None:
    ensure_venv()
    demo_dir = ROOT / "demo-out"
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    run(PY, "-m", "oncofed.demo", str(demo_dir), env=venv_env())


TASKS = {
    "demo": task_demo,
    "test": task_test,
    "test-fast": task_test_fast,
    "lint": task_lint,
    "types": task_types,
    "protos": task_protos,
    "bench": task_bench,
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in TASKS:
        print(__doc__)
        sys.exit(2)
    TASKS[sys.argv[1]]()
