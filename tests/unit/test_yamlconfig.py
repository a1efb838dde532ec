"""wire.yamlconfig: the generic reader behind server.config and appliance.config."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvh_camera.yamlconfig import (
    STRING,
    ConfigError,
    ConfigProblem,
    Field,
    Reader,
    boolean,
    integer,
    load_yaml,
    one_of,
)

FIELDS = (
    Field("name", "name", STRING),
    Field("net.port", "port", integer(1, 9)),
    Field("net.key", "key", STRING),
    Field("mode", "mode", one_of(("fast", "slow"))),
    Field("flags.on", "on", boolean),
)


def read(data: object) -> tuple[dict[str, object], dict[str, dict[str, object]], list[str]]:
    reader = Reader("f.yaml", Path("/base"), {}, secret_keys={"key"})
    raw = reader.layout(data, FIELDS, extra=["net.extra"])
    values = reader.parse_fields(raw, FIELDS)
    return raw, values, [str(problem) for problem in reader.problems]


def test_field_section() -> None:
    assert Field("a.b", "b", STRING).section == "a"
    assert Field("a", "a", STRING).section == ""


def test_layout_mixes_top_level_keys_and_sections() -> None:
    raw, values, problems = read(
        {"name": "n", "net": {"port": 3, "extra": [1]}, "mode": None, "flags": None}
    )
    assert raw == {"name": "n", "net.port": 3, "net.extra": [1], "mode": None}
    assert problems == ["f.yaml: mode = null: expected one of fast, slow, got null"]
    assert values == {"": {"name": "n"}, "net": {"port": 3}, "flags": {}}


def test_unknown_keys_and_order_of_problems() -> None:
    _, _, problems = read({"nam": 1, "net": {"prot": 1, "port": 0, 5: 1}, "flags": []})
    assert problems == [
        "f.yaml: nam: unknown key, did you mean 'name'?",
        "f.yaml: net.prot: unknown key, did you mean 'port'?",
        "f.yaml: net.5: unknown key; expected one of: port, key, extra",
        "f.yaml: flags = []: expected a mapping with keys on, got list",
        "f.yaml: net.port = 0: expected an integer 1..9",
    ]


def test_secret_keys_are_masked() -> None:
    _, _, problems = read({"net": {"key": 123456789012}})
    assert problems == [
        "f.yaml: net.key = 12…12: expected a string, got integer (put it in quotes)"
    ]


def test_not_a_mapping_at_the_top() -> None:
    _, _, problems = read(7)
    assert problems == ["f.yaml: expected a mapping with keys name, net, mode, flags, got integer"]


def test_load_yaml_refuses_duplicate_keys_but_allows_merges(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("base: &b {x: 1}\nuse: {<<: *b, y: 2}\n")
    assert load_yaml(path) == {"base": {"x": 1}, "use": {"x": 1, "y": 2}}
    path.write_text("a: 1\nb: {c: 1, c: 2}\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    assert caught.value.problems == (
        ConfigProblem(str(path), "", ..., "invalid YAML at line 2, column 11: duplicate key 'c'"),
    )
