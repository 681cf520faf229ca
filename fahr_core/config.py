"""Configuration: keys declared by plugins, layered from defaults, files, environment and CLI.

Layers, lowest first:

1. the default each key declares (:class:`ConfigKey`);
2. ``fahr.toml`` beside the training artifact, table ``[DRIVER]`` — or ``[tool.fahr.DRIVER]`` in a
   ``pyproject.toml`` there; a top-level ``driver = "NAME"`` chooses the default driver;
3. environment variables ``FAHR_<DRIVER>_<KEY>`` (upper case, ``-`` as ``_``);
4. ``--config.KEY=VALUE`` on the command line.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping


from fahr_core.errors import ConfigError, PluginError, UsageError
# The value types live in fahr_core.values; these names stay importable from here.
from fahr_core.values import COMMANDS, Config, ConfigKey  # noqa: F401

DEFAULT_DRIVER = "local"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_var(driver: str, key: str) -> str:
    """The environment variable that sets ``key`` for ``driver``: ``FAHR_<DRIVER>_<KEY>``."""
    return f"FAHR_{driver}_{key}".upper().replace("-", "_")


def convert(key: ConfigKey, value: Any, source: str) -> Any:
    """Turn a raw value (a string from env/CLI, or a TOML value) into the key's type."""

    def wrong() -> ConfigError:
        return ConfigError(
            f"config.{key.name}={value!r} (from {source}) is not a valid {key.type_name}; "
            f"expected {key.type_name}"
        )

    if key.type is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):  # as "0" and "1" are, from the API or a file
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise wrong()
    if key.type is int:
        if isinstance(value, bool):
            raise wrong()
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            raise wrong() from None
    if key.type is float:
        if isinstance(value, bool):
            raise wrong()
        try:
            return float(value)
        except (TypeError, ValueError):
            raise wrong() from None
    if key.type is dict:
        if isinstance(value, Mapping):
            return {str(k): str(v) for k, v in value.items()}
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return {}
            if text.startswith("{"):
                try:
                    parsed = json.loads(text)
                except json.JSONDecodeError:
                    raise wrong() from None
                if not isinstance(parsed, dict):
                    raise wrong()
                return {str(k): str(v) for k, v in parsed.items()}
            pairs = {}
            for item in text.split(","):
                k, sep, v = item.partition("=")
                if not sep or not k.strip():
                    raise wrong()
                pairs[k.strip()] = v.strip()
            return pairs
        raise wrong()
    # str
    if isinstance(value, (dict, list, bool)):
        raise wrong()
    return str(value)


def text_problem(text: str, *, utf8: bool = True) -> str | None:
    """What keeps ``text`` from reaching a process intact, and what to do; None when nothing does.

    A NUL ends a C string: no argument, environment variable or path can hold one (runc refuses
    the container only after the image is built). Bytes of the command line that are not UTF-8
    reach Python as lone surrogates, which JSON (Docker's and SageMaker's APIs, the contract's
    files) cannot carry: Docker silently replaces them. ``utf8=False`` for paths, whose bytes
    may be any but NUL.
    """
    if "\x00" in text:
        return "holds a NUL character, which no path, argument or environment variable can hold: remove it"
    if utf8:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "is not UTF-8 text (bytes that are not UTF-8 cannot be passed on): pass it as UTF-8"
    return None


def unknown_key_error(name: str, known: Iterable[str], driver: str, source: str) -> ConfigError:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"did you mean config.{close[0]}?" if close else f"valid keys: {', '.join(known)}"
    return ConfigError(
        f"unknown config key {name!r} for driver {driver!r} (from {source}); {hint} "
        f"(see 'fahr config {driver}')"
    )


#: A project file's names, in the order looked for (:func:`read_project_file`); a value read from
#: one has the file's path as its source.
PROJECT_FILES = ("fahr.toml", "pyproject.toml")


@dataclass(frozen=True)
class ProjectFile:
    """The fahr settings found beside a training artifact."""

    path: Path | None
    data: Mapping[str, Any]

    @property
    def driver(self) -> str | None:
        value = self.data.get("driver")
        return str(value) if value is not None else None

    def table(self, driver: str) -> Mapping[str, Any]:
        table = self.data.get(driver, {})
        if not isinstance(table, Mapping):
            name = f"tool.fahr.{driver}" if self.path and self.path.name == "pyproject.toml" else driver
            raise ConfigError(f"{self.path}: [{name}] must be a table of config keys")
        return table


#: How deep fahr.toml may nest tables and arrays: fahr needs 3 ([tool.fahr.local]); pyproject.toml
#: files of other tools go a few levels further. Deeper is a broken or hostile file.
MAX_NESTING = 64


def read_project_file(folder: Path) -> ProjectFile:
    """Read ``fahr.toml``, else ``[tool.fahr]`` of ``pyproject.toml``, in ``folder``.

    Whatever is found under either name is read: a folder, a broken link, a file that is not UTF-8,
    not TOML, or nested deeper than :data:`MAX_NESTING` is a :class:`ConfigError` (exit 2), never
    skipped silently nor an internal error.
    """
    fahr_toml, pyproject = (folder / name for name in PROJECT_FILES)
    path = fahr_toml if os.path.lexists(fahr_toml) else pyproject
    if not os.path.lexists(path):
        return ProjectFile(None, {})
    data = _parse_toml(path)
    if path is pyproject:
        tool = data.get("tool", {})
        data = tool.get("fahr") if isinstance(tool, Mapping) else None
        if data is None:
            return ProjectFile(None, {})
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: [tool.fahr] must be a table (driver = \"NAME\", [tool.fahr.NAME] …)")
    if "driver" in data and not isinstance(data["driver"], str):
        raise ConfigError(f"{path}: driver = {data['driver']!r} must be a driver's name, e.g. driver = \"local\"")
    return ProjectFile(path, data)


def _parse_toml(path: Path) -> dict:
    try:
        # O_NONBLOCK: a FIFO planted under the name must not hang fahr; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror}); make it a readable TOML file or remove it") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{path} is a folder, not a TOML file; rename or remove it")
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{path} is not a regular file; make it a TOML file or remove it")
        with os.fdopen(os.dup(fd), "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror}); make it a readable TOML file or remove it") from None
    finally:
        os.close(fd)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML (not UTF-8 text: byte {raw[exc.start]:#04x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    too_deep = ConfigError(
        f"{path} nests tables or arrays more than {MAX_NESTING} levels deep; fahr reads at most "
        f"{MAX_NESTING}: fix or remove it"
    )
    if _lexical_depth(text) > MAX_NESTING:
        raise too_deep
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix or remove it") from None
    except (RecursionError, MemoryError):  # tomllib recurses once per nested array or inline table
        raise too_deep from None
    if _depth(data) > MAX_NESTING:
        raise too_deep
    return data


_TOML_SIGNIFICANT = re.compile(r"[\n#\"'\[\]{}.=]")


def _lexical_depth(text: str, limit: int = MAX_NESTING) -> int:
    """A quick look at a TOML text's nesting before tomllib parses it: more than ``limit``?

    tomllib takes time quadratic in the parts of a dotted key (``[a.b.c…]`` 200 000 deep parses
    for a minute) and recurses once per open bracket, so both are counted first: the dots of one
    line outside strings and comments, and the open ``[``/``{``. A dot between two digits in a
    value is a number's. It only needs to be close: :func:`_depth` checks the parsed result exactly.
    """
    deepest = brackets = dots = 0
    header = in_value = False
    i, n = 0, len(text)
    while deepest <= limit:
        found = _TOML_SIGNIFICANT.search(text, i)
        if found is None:
            break
        i = found.start()
        c = text[i]
        if c == "\n":
            dots, in_value = 0, brackets > 0 and not header
        elif c == "#":
            i = text.find("\n", i)
            if i < 0:
                break
            continue
        elif c in "\"'":
            i = _string_end(text, i)
            continue
        elif c == "=":
            in_value = True
        elif c in "[{":
            header = header or (c == "[" and brackets == 0 and not in_value)
            brackets += 1
        elif c in "]}":
            brackets = max(0, brackets - 1)
            header = header and brackets > 0
        elif not (in_value and 0 < i < n - 1 and text[i - 1].isdigit() and text[i + 1].isdigit()):
            dots += 1
        deepest = max(deepest, brackets + dots)
        i += 1
    return deepest


def _string_end(text: str, i: int) -> int:
    """The index just past the TOML string that starts at ``text[i]``."""
    quote = text[i]
    delimiter = quote * 3 if text.startswith(quote * 3, i) else quote
    j = i + len(delimiter)
    while j < len(text):
        if quote == '"' and text[j] == "\\":
            j += 2
            continue
        if text.startswith(delimiter, j):
            return j + len(delimiter)
        if len(delimiter) == 1 and text[j] == "\n":
            return j  # an unterminated string: tomllib will say so
        j += 1
    return j


def _depth(value: Any) -> int:
    """How deep tables and arrays nest in a parsed TOML value (iteratively: no recursion limit)."""
    deepest = 0
    stack = [(value, 0)]  # the document itself is level 0: `a = []` is 1 deep, [a.b.c] 3
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_NESTING:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def folder_setting(config: Config | Mapping[str, Any], name: str) -> str:
    """``config[name]``, a folder's path: ``~`` expanded, and a relative path set in a project file
    taken from that file's folder, so that the project's ``fahr.toml`` means the same folder
    whatever folder fahr runs in (``fahr fit proj/train.py`` or ``cd proj && fahr fit train.py``).
    Set anywhere else (the environment, ``--config``, the API's ``config``), a relative path stays
    relative: taken from the current folder. An empty value stays empty (the key is off). A plain
    mapping, which says no source, is taken as set on the command line."""
    raw = os.path.expanduser(str(config[name]))
    source = getattr(config, "sources", {}).get(name, "")
    if raw.strip() and not os.path.isabs(raw) and os.path.basename(source) in PROJECT_FILES:
        return os.path.join(os.path.dirname(os.path.abspath(source)), raw)
    return raw


def choose_driver(cli_driver: str | None, project: ProjectFile, environ: Mapping[str, str] | None = None) -> str:
    """The driver of a run: ``--train-driver``, else ``$FAHR_DRIVER``, else the file's ``driver``, else local."""
    environ = os.environ if environ is None else environ
    return cli_driver or environ.get("FAHR_DRIVER") or project.driver or DEFAULT_DRIVER


def parse_pairs(values: Iterable[str], flag: str) -> dict[str, str]:
    """``KEY=VALUE`` options (``--hp``, ``--input``, ``--env``, ``fahr init --set``) into a dict;
    values may hold ``=``. A missing ``=`` or key is a :class:`UsageError` naming ``flag``."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} {item!r}: expected {flag} KEY=VALUE")
        pairs[key.strip()] = value
    return pairs


def parse_cli_pairs(args: Iterable[str]) -> list[tuple[str, str]]:
    """Parse ``--config.KEY=VALUE`` (and ``--config.KEY VALUE``) from leftover CLI arguments.

    Values may contain ``=``: only the first one separates key from value.
    """
    pairs: list[tuple[str, str]] = []
    args = list(args)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--config."):
            raise ConfigError(
                f"unexpected argument {arg!r}: see the command's --help; driver settings are "
                "--config.KEY=VALUE, and fahr's own options (--debug) go before the command"
            )
        body = arg[len("--config."):]
        key, sep, value = body.partition("=")
        if not sep:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise ConfigError(f"{arg} needs a value: {arg}=VALUE")
            value = args[i + 1]
            i += 1
        if not key:
            raise ConfigError(f"{arg!r} names no key; write --config.KEY=VALUE")
        pairs.append((key.replace("-", "_"), value))
        i += 1
    return pairs


def resolve(
    driver: str,
    keys: Iterable[ConfigKey],
    project: ProjectFile,
    overrides: Iterable[tuple[str, Any]] | Mapping[str, Any] = (),
    environ: Mapping[str, str] | None = None,
    check_required: bool = True,
    command: str | None = None,
) -> Config:
    """Layer the values of ``keys`` for ``driver`` and check names, types and required keys.

    ``overrides`` are the top layer (``--config.KEY=VALUE`` pairs, or the API's ``config`` dict).
    ``check_required`` enforces the keys marked ``required``; ``command`` (one of
    :data:`COMMANDS`) enforces, besides, the keys whose ``required_for`` names it.
    """
    environ = os.environ if environ is None else environ
    declared: dict[str, ConfigKey] = {}
    for key in keys:
        if key.name in declared:
            raise ConfigError(f"config key {key.name!r} is declared twice by the installed plugins")
        # A str would be read letter by letter, a misspelt command never enforced: the driver's bug.
        wrong = [c for c in key.required_for if c not in COMMANDS] if not isinstance(key.required_for, str) else [
            key.required_for]
        if wrong:
            raise PluginError(
                f"driver {driver!r} declares config.{key.name} required_for={key.required_for!r}; "
                f"expected a tuple of {', '.join(COMMANDS)} (report it to the driver's authors)"
            )
        declared[key.name] = key

    values = {name: key.default for name, key in declared.items()}
    sources = {name: "default" for name in declared}

    def put(name: str, raw: Any, source: str) -> None:
        if name not in declared:
            raise unknown_key_error(name, declared, driver, source)
        values[name] = convert(declared[name], raw, source)
        value = values[name]
        for text in [*value.keys(), *value.values()] if isinstance(value, dict) else [value]:
            # Refused here, before any driver builds or launches with it (a path's bytes may be
            # any but NUL: text that is not UTF-8 is not refused).
            problem = text_problem(text, utf8=False) if isinstance(text, str) else None
            if problem:
                raise ConfigError(f"config.{name}={value!r} (from {source}) {problem}")
        problem = declared[name].check(values[name]) if declared[name].check else None
        if problem:
            raise ConfigError(f"config.{name}={values[name]!r} (from {source}) {problem}")
        sources[name] = source

    if project.path is not None:
        for name, raw in project.table(driver).items():
            put(name, raw, str(project.path))
    prefix = env_var(driver, "")
    for var, raw in sorted(environ.items()):
        if var.startswith(prefix):
            put(var[len(prefix):].lower(), raw, f"${var}")
    # The command line's and the Python API's values, as given: strings from a command line are
    # converted as the environment's are, an API's bool, int or dict is taken as it is.
    for name, raw in (overrides.items() if isinstance(overrides, Mapping) else overrides):
        put(name, raw, f"--config.{name}")

    config = Config(driver, values, sources)
    require(config, declared.values(), command, check_required=check_required)
    return config


def require(config: Config, keys: Iterable[ConfigKey], command: str | None, *, check_required: bool = True) -> None:
    """Refuse a resolved ``config`` that lacks a key ``command`` needs: the keys marked ``required``
    (with ``check_required``) and those whose ``required_for`` names ``command``.

    A session resolved once for one command (``fit``) is checked again here for the next (a
    job's ``wait``), without resolving anything anew.
    """
    for key in keys:
        needed = (check_required and key.required) or key.required_by(command)
        if needed and config[key.name] in (None, ""):
            purpose = f" to {command}" if key.required_by(command) and not key.required else ""
            raise ConfigError(
                f"driver {config.driver!r} needs config.{key.name}{purpose} ({key.help.rstrip('.')}): pass "
                f"--config.{key.name}=VALUE, set {env_var(config.driver, key.name)}, or add it to fahr.toml"
            )


_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def env_size(name: str, default: int, *, example: str, zero: str = "", environ: Mapping[str, str] | None = None) -> int:
    """The size the environment variable ``name`` sets: a number of bytes, or with a K/M/G/T suffix
    in powers of 1024 (``100M``); ``default`` when unset. ``zero`` says what 0 means (``"to never
    warn"``); without it 0 is refused. ``environ`` replaces ``os.environ``. A bad value is a :class:`UsageError` naming the variable."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    value = parse_size(raw)
    if value is None or (value == 0 and not zero):
        zero_text = f", 0 {zero}" if zero else ""
        raise UsageError(f"{name}={raw!r} is not a size; give a number of bytes such as {example} "
                         f"(K, M, G, T are powers of 1024){zero_text}, or unset it for the default of "
                         f"{_short_size(default)}")
    return value


def parse_size(raw: str) -> int | None:
    """A size as fahr reads one (``env_size``, the local driver's ``memory``): a number of bytes,
    or with a K/M/G/T suffix in powers of 1024 (``100M``, ``64MiB``); None when it is not one."""
    match = re.fullmatch(r"(\d{1,20})\s*(?:([KMGT])(?:i?B)?)?", raw.strip(), re.IGNORECASE)
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").upper()] if match else None


def _short_size(n: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if n and n % _SIZE_UNITS[unit] == 0:
            return f"{n // _SIZE_UNITS[unit]}{unit}"
    return str(n)
