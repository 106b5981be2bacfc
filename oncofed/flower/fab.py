"""The Flower App that `flwr run` bundles (a FAB): generated at run time, because its run-config
section must declare every key the run sends.

Pinned against flwr 1.42 (flwr/common/config.py `validate_fields_in_config`, `fuse_dicts`): a FAB
needs `[project]` name and version, `[tool.flwr.app]` publisher and `[tool.flwr.app.components]`
serverapp and clientapp as `module:attribute`; `flwr run` checks each module can be found on its
own sys.path (so oncofed must be installed where `flwr` runs); `--run-config` may only override
keys present in `[tool.flwr.app.config]`, whose values must be str, int, float or bool. The bundle
itself carries no code of ours: the components are oncofed's installed modules, the same code at
the SuperLink and every SuperNode, and `--disable-runtime-dependency-installation` keeps Flower
from installing anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from oncofed import __version__
from oncofed.flower.deploy import FlowerError

SERVERAPP = "oncofed.flower.serverapp:app"
CLIENTAPP = "oncofed.flower.clientapp:app"
APP_NAME = "oncofed-flower"
PUBLISHER = "oncofed"
_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_EMPTY: dict[type, object] = {str: "", int: 0, float: 0.0, bool: False}


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(v)


def pyproject(config: Mapping[str, object], *, serverapp: str = SERVERAPP, clientapp: str = CLIENTAPP,
              name: str = APP_NAME, version: str = __version__) -> str:
    """The FAB's pyproject.toml: components, and `config`'s keys declared with empty values of the
    same type (the values themselves travel in the run config, not in the bundle)."""
    for ref in (serverapp, clientapp):
        if not _REF.fullmatch(ref):
            raise FlowerError(f"not a Flower component reference (module:attribute): {ref!r}")
    lines = ["[project]", f"name = {json.dumps(name)}", f"version = {json.dumps(version)}",
             'description = "oncofed: exact federated regression on Flower"', "dependencies = []", "",
             "[tool.flwr.app]", f"publisher = {json.dumps(PUBLISHER)}", "",
             "[tool.flwr.app.components]", f"serverapp = {json.dumps(serverapp)}",
             f"clientapp = {json.dumps(clientapp)}", "", "[tool.flwr.app.config]"]
    for key, v in config.items():
        if type(v) not in _EMPTY:
            raise FlowerError(f"run-config value {key!r} must be str, int, float or bool")
        lines.append(f"{json.dumps(key)} = {_value(_EMPTY[type(v)])}")
    return "\n".join(lines) + "\n"


def write_app(directory: Path, config: Mapping[str, object], *, serverapp: str = SERVERAPP,
              clientapp: str = CLIENTAPP, files: Mapping[str, str] | None = None) -> Path:
    """Write the app directory `flwr run` bundles: pyproject.toml, plus `files` (name → text) for
    apps that ship their own modules (the tests' probe app)."""
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / "pyproject.toml").write_text(pyproject(config, serverapp=serverapp, clientapp=clientapp), "utf-8")
    for name, text in (files or {}).items():
        if "/" in name or name.startswith("."):
            raise FlowerError(f"app files sit at the top of the app: {name!r}")
        (directory / name).write_text(text, "utf-8")
    return directory
