"""Resolving every option: flag > environment > files (``--config`` / ``CURRENTS_CONFIG``) > default.

A secret may be given at each level as the path of a file holding it (``--api-key-file``,
``AMPLITUDE_API_KEY_FILE``, ``api_key_file``: the ``_FILE`` convention of official container
images), so that it is in neither ``ps`` nor the TOML file. Several ``--config`` files are merged in
order, a later file's keys winning one by one.

Each precedence level is a pydantic-settings source holding raw values by option; pydantic-settings
merges them (the first level that has a value wins) and validates the result into :class:`Settings`.
The loader keeps where each value came from, so ``config`` can show it and every error names the
option's flag and its source. A secret's value never appears in an error.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource

from consumer.settings.delivery import BATCH_API_DEVICE_RATE
from consumer.settings.fields import Option, OptionError, SettingsError, read_secret
from consumer.settings.mapping import GLOSSARY_DEFAULTS, names_table
from consumer.settings.model import GROUPS, OPTION_BY_KEY, OPTIONS, Settings

SECRETS = tuple(o for o in OPTIONS if o.secret)
"""The secret options: each may also be read from a file (see :func:`load`)."""
_SECRET_OF_FILE_KEY = {o.file_key: o for o in SECRETS}
_FILE_KEYS = set(_SECRET_OF_FILE_KEY)


def add_arguments(parser: argparse.ArgumentParser, groups: tuple[str, ...]) -> None:
    """Add ``--config`` and the flags of the option ``groups`` (keys of :data:`GROUPS`: the ones the
    command reads) to a subcommand parser, each under its group's title; a secret's flag is followed by
    its ``-file`` twin. Every flag defaults to unset, so the loader can tell a given value from the
    environment's or the file's."""
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown option groups: {', '.join(unknown)}; known: {', '.join(GROUPS)}")
    parser.add_argument(
        "--config",
        default=None,
        action="append",
        metavar="PATH",
        help="TOML config file (env CURRENTS_CONFIG); repeated, merged in order, later keys winning",
    )
    titled: dict[str, argparse._ArgumentGroup] = {}
    for key, title in GROUPS.items():
        if key not in groups:
            continue
        for opt in OPTIONS:
            if opt.group == key:
                if title not in titled:
                    titled[title] = parser.add_argument_group(title)
                titled[title].add_argument(opt.flag, **_argument(opt))
                if opt.secret:
                    titled[title].add_argument(opt.file_flag, **_file_argument(opt))


def _argument(opt: Option) -> dict[str, Any]:
    """The ``add_argument`` keywords of one option: its help line says the environment variable and
    the default as a person writes it (a secret's, that other users can see a value given as a flag)."""
    where = f"env {opt.env}; default {opt.shown_default()}"
    if opt.secret:
        where = f"env {opt.env}; as a flag, other users of this machine can see it in ps: "
        where += f"prefer {opt.file_flag}"
    kwargs: dict[str, Any] = {
        "default": None,
        "help": f"{opt.help} ({where})".replace("%", "%%"),
        "dest": opt.key,
    }
    if opt.metavar:
        kwargs["metavar"] = opt.metavar
    if opt.choices:
        kwargs.update(choices=opt.choices, type=opt.parse)  # the parse folds case where allowed
    if opt.repeatable:
        kwargs["action"] = "append"
    if opt.switch:
        kwargs.update(action="store_const", const="true")
    return kwargs


def _file_argument(opt: Option) -> dict[str, Any]:
    """The ``add_argument`` keywords of a secret's ``-file`` flag."""
    return {
        "default": None,
        "dest": opt.file_key,
        "metavar": "PATH",
        "help": f"file holding {opt.flag}, e.g. a mounted Secret; trailing newlines stripped "
        f"(env {opt.file_env})",
    }


class Layer(PydanticBaseSettingsSource):
    """One precedence level: raw option values by dotted key, and where each came from (``origin``
    unless :attr:`origins` says otherwise)."""

    def __init__(self, values: Mapping[str, Any], origin: str) -> None:
        super().__init__(Settings)
        self.values = dict(values)
        self._origin = origin
        self.origins: dict[str, str] = {}

    def origin(self, key: str) -> str:
        """Where the value of ``key`` came from, as ``config`` and errors show it."""
        return self.origins.get(key, self._origin)

    def secret_file(self, opt: Option, path: str, where: str, origin: str, both: str) -> None:
        """Take the secret ``opt`` from the file ``path`` named at this level (``where``, as errors say
        it); ``both`` is the error when the secret itself is given at this level too."""
        if opt.key in self.values:
            raise SettingsError(both)
        self.values[opt.key] = read_secret(path, opt.file_flag, where)
        self.origins[opt.key] = origin

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: :meth:`__call__` hands over the whole level at once."""
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        nested: dict[str, Any] = {}
        for key, value in self.values.items():
            *path, leaf = key.split(".")
            node = nested
            for part in path:
                node = node.setdefault(part, {})
            node[leaf] = value
        return nested


def load(args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Resolve every option: flag > environment > config files > default. Raises :class:`SettingsError`.

    At each level a secret may be given as the name of a file holding it instead (``--api-key-file``,
    ``AMPLITUDE_API_KEY_FILE``, ``api_key_file``); both at one level is an error. Several config files
    (``--config`` repeated) are merged in order, a later file's keys winning one by one; each value's
    source names the file it came from."""
    env = os.environ if env is None else env
    flags = vars(args) if args is not None else {}
    given = flags.get("config")
    paths = [given] if isinstance(given, str) else list(given or ())
    if not paths and env.get("CURRENTS_CONFIG"):
        paths = [env["CURRENTS_CONFIG"]]
    file_level, names = _read_files(paths)
    levels = [_flag_level(flags), _env_level(env), file_level]
    if _raw(levels, "amplitude.api") == "batch" and _raw(levels, "limits.device_rate") is None:
        levels.append(Layer({"limits.device_rate": BATCH_API_DEVICE_RATE}, "default (batch API)"))
    if _raw(levels, "mapping.profile") == "glossary":
        # MappingConfig applies these too; as a level, ``config`` shows where the values came from
        glossary = {f"mapping.{key}": value for key, value in GLOSSARY_DEFAULTS.items()}
        levels.append(Layer(glossary, "default (glossary profile)"))
    sources = {
        o.key: next((lv.origin(o.key) for lv in levels if o.key in lv.values), "default") for o in OPTIONS
    }
    if names:
        sources["mapping.names"] = ", ".join(f"file {path}" for path in names)
    merged_names = {key: value for table in names.values() for key, value in table.items()}
    extra = Layer({"sources": sources, "mapping.names": names_table(merged_names)}, "")
    problems: list[str] = []
    try:
        # BaseSettings' own argument for pre-built sources; mypy sees only the fields in __init__
        settings = Settings(_build_sources=((extra, *levels), {}))  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = [_message(error, sources) for error in exc.errors()]
    if problems:
        # raised outside the handler: pydantic's error (which holds the raw input, perhaps a secret)
        # must not ride along as __context__
        raise SettingsError("; ".join(problems))
    settings.kafka.event_type_for_topic()
    return settings


def _flag_level(flags: Mapping[str, Any]) -> Layer:
    level = Layer({o.key: flags[o.key] for o in OPTIONS if flags.get(o.key) is not None}, "flag")
    for o in SECRETS:
        path = flags.get(o.file_key)
        if path:
            both = f"{o.flag} (from flag): give {o.flag} or {o.file_flag}, not both"
            level.secret_file(o, path, f"flag {o.file_flag}", f"flag {o.file_flag} {path}", both)
    return level


def _env_level(env: Mapping[str, str]) -> Layer:
    level = Layer({o.key: env[o.env] for o in OPTIONS if o.env in env}, "env")
    level.origins.update({o.key: f"env {o.env}" for o in OPTIONS})
    for o in SECRETS:
        path = env.get(o.file_env)
        if path:
            both = f"{o.flag} (from env): set {o.env} or {o.file_env}, not both"
            level.secret_file(o, path, f"env {o.file_env}", f"env {o.file_env} {path}", both)
    return level


def _read_files(paths: list[str]) -> tuple[Layer, dict[str, dict[str, Any]]]:
    """The level of the config files ``paths``, merged in order (a later file's key wins), and each
    file's ``[mapping.names]`` table by path. A secret's ``*_file`` key is read here; a relative path
    in it is taken from the config file's directory."""
    level = Layer({}, "file")
    names: dict[str, dict[str, Any]] = {}
    for path in paths:
        values = _read_file(path)
        unknown = sorted(set(values) - set(OPTION_BY_KEY) - _FILE_KEYS - {"mapping.names"})
        if unknown:
            raise SettingsError(f"unknown keys in config file {path}: {', '.join(unknown)}")
        table = values.pop("mapping.names", None)
        if isinstance(table, dict) and table:
            names[path] = table
        secret_files = {key: values.pop(key) for key in list(values) if key in _FILE_KEYS}
        for key, value in values.items():
            level.values[key] = value
            level.origins[key] = f"file {path}"
        for key, held in secret_files.items():
            o = _SECRET_OF_FILE_KEY[key]
            level.values.pop(o.key, None)  # this file names where the secret is: an earlier value is replaced
            if o.key in values:
                raise SettingsError(f"{o.flag} (from file {path}): give {o.key} or {o.file_key}, not both")
            if not isinstance(held, str) or not held:
                raise SettingsError(f"{o.file_flag} (from file {path}): expected a path")
            full = str(Path(path).parent / held)
            leaf = o.file_key.rpartition(".")[2]
            level.secret_file(o, full, f"file {path}", f"file {path} ({leaf} {held})", "")
    return level, names


def _raw(levels: list[Layer], key: str) -> Any:
    return next((lv.values[key] for lv in levels if key in lv.values), None)


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return _flatten(tomllib.load(fh))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read config file {path}: {exc}") from exc


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and full != "mapping.names":
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


def _message(error: Any, sources: Mapping[str, str]) -> str:
    """One validation error as ``--flag (from SOURCE): what is wrong`` (never echoing a secret)."""
    loc = [str(part) for part in error["loc"]]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, OptionError):
        loc.append(cause.field)
    key = ".".join(loc)
    opt = OPTION_BY_KEY.get(key)
    if opt is None:  # not an option (e.g. mapping.names given in code): pydantic's own words
        return f"{key}: {error['msg']}"
    kind = error["type"]
    if isinstance(cause, ValueError):
        detail = str(cause)
    elif kind == "literal_error":
        detail = f"{error['input']!r} is not one of {', '.join(opt.choices)}"
    elif opt.bounds and kind in {"greater_than", "greater_than_equal", "less_than_equal"}:
        detail = f"{error['input']!r} is out of range ({opt.bounds})"
    else:
        detail = "invalid value" if opt.secret else str(error["msg"])
    return f"{opt.flag} (from {sources.get(key, 'default')}): {detail}"
