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


def test_the_hub_config_flower_section_has_defaults_and_may_be_left_out(tmp_path):
    path = tmp_path / "hub.toml"
    path.write_text(_filled(hub.render()), "utf-8")
    cfg = hub.load(path)
    assert (cfg.flower_host, cfg.flower_port, cfg.flower_supernode_auth) == ("127.0.0.1", 9092, True)
    assert cfg.flower_dir == (tmp_path / "flower").resolve()
    text = _filled(hub.render())
    path.write_text(text[:text.index("[flower]")], "utf-8")              # a hub.toml from before [flower]
    assert hub.load(path).flower_dir == (tmp_path / "flower").resolve()
    path.write_text(text.replace('listen = "127.0.0.1:9092"', 'listen = "127.0.0.1:0"'), "utf-8")
    with pytest.raises(UsageError, match=r"\[flower\] listen needs a fixed port"):
        hub.load(path)
    path.write_text(text.replace("supernode_auth = true", 'supernode_auth = "yes"'), "utf-8")
    with pytest.raises(UsageError, match="supernode_auth must be true or false"):
        hub.load(path)
