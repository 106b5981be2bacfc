"""The hub's and the researcher's settings files: every setting shown, every fault named."""

from __future__ import annotations

import pytest

from oncofed.errors import UsageError
from oncofed.federation.client import config as researcher
from oncofed.federation.hub import config as hub

FP = "ab" * 32


def _filled(text: str) -> str:
    return text.replace('root_fingerprint = ""', f'root_fingerprint = "{FP}"').replace('= ""', '= "x"')


def test_a_rendered_hub_config_shows_every_setting_and_loads_once_filled(tmp_path):
    text = hub.render()
    for section, keys in hub.SCHEMA.items():
        assert f"[{section}]" in text
        assert all(f"\n{key} = " in text for key in keys)
    path = tmp_path / "hub.toml"
    path.write_text(_filled(text), "utf-8")
    cfg = hub.load(path)
    assert (cfg.host, cfg.port, cfg.prepare_seconds, cfg.answer_seconds) == ("127.0.0.1", 7800, 10, 60)
    assert cfg.database == (tmp_path / "hub.db").resolve() and cfg.root_fingerprint == FP


@pytest.mark.parametrize(("change", "message"), [
    (("prepare_seconds = 10", 'prepare_seconds = "ten"'), r"\[hub\] prepare_seconds must be a whole number"),
    (("[trust]", "[trust]\ncolour = 1"), r"unknown setting\(s\) in \[trust\]: colour"),
    (('listen = "127.0.0.1:7800"', 'listen = "nowhere"'), "listen must be host:port"),
    ((f'root_fingerprint = "{FP}"', 'root_fingerprint = "abc"'), "64 hex digits"),
    (('registry = "x"', 'registry = ""'), r"\[trust\] registry is required"),
    (("answer_seconds = 60", "answer_seconds = 0"), "answer_seconds must be 1 to 600"),
])
def test_a_faulty_hub_config_is_refused_naming_the_key(tmp_path, change, message):
    path = tmp_path / "hub.toml"
    path.write_text(_filled(hub.render()).replace(*change), "utf-8")
    with pytest.raises(UsageError, match=message):
        hub.load(path)


def test_a_researcher_config_needs_credentials_but_not_an_extension(tmp_path):
    path = tmp_path / "researcher.toml"
    text = researcher.render()
    path.write_text(_filled(text).replace('extension = "x"', 'extension = ""'), "utf-8")
    cfg = researcher.load(path)
    assert cfg.extension is None and cfg.address == "127.0.0.1:7800" and cfg.history == tmp_path / "queries.jsonl"
    path.write_text(text, "utf-8")
    with pytest.raises(UsageError, match="is required"):
        researcher.load(path)
    with pytest.raises(UsageError, match="no such researcher config"):
        researcher.load(tmp_path / "missing.toml")
