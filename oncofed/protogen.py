"""Regenerate oncofed/v1 from protos/ — the one way generated code is made.

Generated modules are committed (so installing oncofed never needs grpcio-tools) and a test plus
`python3 tasks.py test` run `--check`, which fails when they drift from the .proto sources.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO / "protos"
OUT_PACKAGE = REPO / "oncofed" / "v1"
INIT_TEXT = '"""Generated protobuf and gRPC modules for oncofed.v1 — do not edit; run tasks.py protos."""\n'


def generate(into: Path) -> list[Path]:
    """Run protoc (grpcio-tools) for every .proto under protos/ and return the files written."""
    from grpc_tools import protoc  # dev-only dependency, imported where it is needed

    sources = sorted(PROTO_ROOT.rglob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={into}",
        f"--pyi_out={into}",
        f"--grpc_python_out={into}",
        *[str(s) for s in sources],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    pkg = into / "oncofed" / "v1"
    (pkg / "__init__.py").write_text(INIT_TEXT)
    return sorted(p for p in pkg.iterdir() if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if oncofed/v1 is stale")
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        fresh_names = {p.name for p in fresh}
        current = {p.name for p in OUT_PACKAGE.glob("*") if p.is_file()} if OUT_PACKAGE.exists() else set()
        if opts.check:
            stale = sorted(
                n for n in fresh_names if n not in current
                or not filecmp.cmp(Path(tmp) / "oncofed" / "v1" / n, OUT_PACKAGE / n, shallow=False)
            )
            extra = sorted(current - fresh_names)
            if stale or extra:
                print(f"oncofed/v1 is stale (changed: {stale}, orphaned: {extra}); run: python3 tasks.py protos")
                return 1
            print(f"oncofed/v1 matches protos/ ({len(fresh)} files)")
            return 0
        if OUT_PACKAGE.exists():
            shutil.rmtree(OUT_PACKAGE)
        OUT_PACKAGE.mkdir(parents=True)
        for p in fresh:
            shutil.copy2(p, OUT_PACKAGE / p.name)
        print(f"wrote {len(fresh)} files to {OUT_PACKAGE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
