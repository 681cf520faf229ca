"""Configuration layering and errors (unit tests of fahr_core.config)."""

from pathlib import Path

import pytest

from fahr_core import config as cfg
from fahr_core.config import ConfigKey
from fahr_core.errors import ConfigError

KEYS = [
    ConfigKey("output_path", str, "/default", "Where."),
    ConfigKey("instance_count", int, 1, "How many."),
    ConfigKey("spot", bool, False, "Spot."),
    ConfigKey("ratio", float, 0.5, "A ratio."),
    ConfigKey("tags", dict, {}, "Tags."),
    ConfigKey("role_name", str, "", "The role.", required=True),
]


def project(tmp_path, text):
    (tmp_path / "fahr.toml").write_text(text)
    return cfg.read_project_file(tmp_path)


def test_layers_in_order(tmp_path):
    proj = project(tmp_path, '[mydrv]\noutput_path = "/from-file"\ninstance_count = 2\nspot = true\nrole_name = "r"\n')
    env = {"FAHR_MYDRV_INSTANCE_COUNT": "3", "FAHR_MYDRV_RATIO": "0.25"}
    conf = cfg.resolve("mydrv", KEYS, proj, [("ratio", "0.75")], environ=env)
    assert conf["output_path"] == "/from-file"
    assert conf["instance_count"] == 3  # env beats file
    assert conf["ratio"] == 0.75  # cli beats env
    assert conf["spot"] is True
    assert conf.sources["instance_count"] == "$FAHR_MYDRV_INSTANCE_COUNT"
    assert conf.sources["ratio"] == "--config.ratio"
    assert conf.sources["output_path"].endswith("fahr.toml")
    assert conf.driver == "mydrv"


def test_defaults_when_nothing_set(tmp_path):
    conf = cfg.resolve("mydrv", KEYS, cfg.read_project_file(tmp_path), [("role_name", "x")], environ={})
    assert conf["output_path"] == "/default" and conf["instance_count"] == 1 and conf["spot"] is False


def test_pyproject_tool_table(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.fahr]\ndriver = "mydrv"\n[tool.fahr.mydrv]\nrole_name = "from-pyproject"\n')
    proj = cfg.read_project_file(tmp_path)
    assert cfg.choose_driver(None, proj, environ={}) == "mydrv"
    assert cfg.resolve("mydrv", KEYS, proj, environ={})["role_name"] == "from-pyproject"


def test_driver_choice_order(tmp_path):
    proj = project(tmp_path, 'driver = "filedrv"\n')
    assert cfg.choose_driver(None, cfg.read_project_file(tmp_path / "nowhere"), environ={}) == "local"
    assert cfg.choose_driver(None, proj, environ={}) == "filedrv"
    assert cfg.choose_driver(None, proj, environ={"FAHR_DRIVER": "envdrv"}) == "envdrv"
    assert cfg.choose_driver("clidrv", proj, environ={"FAHR_DRIVER": "envdrv"}) == "clidrv"


def test_unknown_key_names_closest(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'output_pth'.*did you mean config.output_path\?"):
        cfg.resolve("mydrv", KEYS, cfg.read_project_file(tmp_path), [("output_pth", "x")], environ={})


def test_unknown_key_in_env_and_file(tmp_path):
    with pytest.raises(ConfigError, match=r"'instance_cnt'.*\$FAHR_MYDRV_INSTANCE_CNT.*instance_count"):
        cfg.resolve("mydrv", KEYS, cfg.read_project_file(tmp_path), environ={"FAHR_MYDRV_INSTANCE_CNT": "2"})
    proj = project(tmp_path, "[mydrv]\nspott = true\n")
    with pytest.raises(ConfigError, match=r"'spott'.*fahr.toml.*config.spot"):
        cfg.resolve("mydrv", KEYS, proj, environ={})


@pytest.mark.parametrize(
    "key,value,expected",
    [("instance_count", "two", "int"), ("spot", "maybe", "bool"), ("ratio", "half", "float"),
     ("tags", "novalue", "mapping")],
)
def test_wrong_type_names_key_value_and_type(tmp_path, key, value, expected):
    with pytest.raises(ConfigError) as info:
        cfg.resolve("mydrv", KEYS, cfg.read_project_file(tmp_path), [(key, value), ("role_name", "r")], environ={})
    message = str(info.value)
    assert f"config.{key}={value!r}" in message and expected in message


def test_wrong_type_from_toml(tmp_path):
    proj = project(tmp_path, '[mydrv]\ninstance_count = "many"\n')
    with pytest.raises(ConfigError, match=r"config.instance_count='many'.*expected int"):
        cfg.resolve("mydrv", KEYS, proj, environ={})


def test_conversions(tmp_path):
    conf = cfg.resolve("mydrv", KEYS, cfg.read_project_file(tmp_path),
                       [("tags", "team=ml,cost=a=b"), ("spot", "yes"), ("role_name", "r")], environ={})
    assert conf["tags"] == {"team": "ml", "cost": "a=b"}
    assert conf["spot"] is True
    conf = cfg.resolve("mydrv", KEYS, cfg.read_project_file(tmp_path), [("tags", '{"a": 1}'), ("role_name", "r")], environ={})
    assert conf["tags"] == {"a": "1"}


def test_required_key_missing_says_how_to_set_it(tmp_path):
    with pytest.raises(ConfigError, match=r"needs config.role_name.*--config.role_name=VALUE.*FAHR_MYDRV_ROLE_NAME"):
        cfg.resolve("mydrv", KEYS, cfg.read_project_file(tmp_path), environ={})


PER_COMMAND = [
    ConfigKey("bucket", str, "", "Bucket for artifacts.", required_for=("fit",)),
    ConfigKey("queue", str, "", "Queue to follow.", required_for=("wait", "stop")),
    ConfigKey("token", str, "", "Token.", required=True),
]


def test_required_for_is_enforced_for_its_commands_only():
    empty = cfg.ProjectFile(None, {})
    with pytest.raises(ConfigError) as info:
        cfg.resolve("mydrv", PER_COMMAND, empty, [("token", "t")], environ={}, command="fit")
    assert str(info.value) == ("driver 'mydrv' needs config.bucket to fit (Bucket for artifacts): pass "
                               "--config.bucket=VALUE, set FAHR_MYDRV_BUCKET, or add it to fahr.toml")
    for command in ("wait", "stop"):
        with pytest.raises(ConfigError, match=f"needs config.queue to {command} \\(Queue to follow\\)"):
            cfg.resolve("mydrv", PER_COMMAND, empty, [("token", "t")], environ={}, command=command)
    # fetch needs neither; a set value (from anywhere) satisfies it.
    assert cfg.resolve("mydrv", PER_COMMAND, empty, [("token", "t")], environ={}, command="fetch")["bucket"] == ""
    conf = cfg.resolve("mydrv", PER_COMMAND, empty, [("token", "t")], environ={"FAHR_MYDRV_BUCKET": "b"},
                       command="fit")
    assert conf["bucket"] == "b"
    # `required` still means every command, when required keys are checked at all.
    with pytest.raises(ConfigError, match=r"^driver 'mydrv' needs config.token \(Token\)"):
        cfg.resolve("mydrv", PER_COMMAND, empty, [("bucket", "b")], environ={}, command="fit")
    assert cfg.resolve("mydrv", PER_COMMAND, empty, environ={}, check_required=False)["token"] == ""


@pytest.mark.parametrize("required_for", [("fitt",), "fit"])
def test_required_for_naming_no_command_is_the_drivers_bug(required_for):
    from fahr_core.errors import PluginError

    keys = [ConfigKey("bucket", str, "", "Bucket.", required_for=required_for)]
    with pytest.raises(PluginError, match=r"declares config.bucket required_for=.*expected a tuple of fit, wait, stop, fetch"):
        cfg.resolve("mydrv", keys, cfg.ProjectFile(None, {}), environ={}, command="fetch")


def test_key_declared_twice(tmp_path):
    with pytest.raises(ConfigError, match="declared twice"):
        cfg.resolve("d", KEYS + [ConfigKey("spot", bool, True, "again")], cfg.read_project_file(tmp_path), environ={})


def test_invalid_toml(tmp_path):
    (tmp_path / "fahr.toml").write_text("[broken\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        cfg.read_project_file(tmp_path)


def test_parse_cli_pairs_values_may_hold_equals():
    assert cfg.parse_cli_pairs(["--config.output_path=s3://b/p?x=1", "--config.role-name", "R"]) == [
        ("output_path", "s3://b/p?x=1"), ("role_name", "R")]
    with pytest.raises(ConfigError, match="needs a value"):
        cfg.parse_cli_pairs(["--config.x"])
    with pytest.raises(ConfigError, match="unexpected argument"):
        cfg.parse_cli_pairs(["--nonsense"])


def test_malformed_project_files(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool]\nfahr = 3\n")
    with pytest.raises(ConfigError, match=r"\[tool.fahr\] must be a table"):
        cfg.read_project_file(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.fahr]\nlocal = 3\n')
    with pytest.raises(ConfigError, match=r"\[tool.fahr.local\] must be a table"):
        cfg.resolve("local", KEYS, cfg.read_project_file(tmp_path), environ={})
    (tmp_path / "fahr.toml").write_bytes(b"\xff\xfe[local]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        cfg.read_project_file(tmp_path)
    (tmp_path / "fahr.toml").write_text('driver = ["a"]\n')
    with pytest.raises(ConfigError, match="must be a driver's name"):
        cfg.read_project_file(tmp_path)


def test_real_pyproject_files_pass_the_nesting_check(tmp_path):
    # The pre-parse depth count must not refuse ordinary files: strings, comments, floats, dates.
    root = Path(__file__).resolve().parents[1]
    found = [p for p in root.rglob("pyproject.toml") if ".venv" not in p.parts and "templates" not in p.parts]
    assert found
    for path in found:
        text = path.read_text(encoding="utf-8")
        assert cfg._lexical_depth(text) <= cfg.MAX_NESTING, path
        (tmp_path / "pyproject.toml").write_text('x = 1979-05-27T07:32:00.999\nf = [0.5, 1.5]  # a.b.c.d\n' + text)
        cfg.read_project_file(tmp_path)


def test_a_folder_named_fahr_toml_is_not_skipped_for_pyproject(tmp_path):
    (tmp_path / "fahr.toml").mkdir()
    (tmp_path / "pyproject.toml").write_text('[tool.fahr]\ndriver = "local"\n')
    with pytest.raises(ConfigError, match="is a folder, not a TOML file"):
        cfg.read_project_file(tmp_path)
