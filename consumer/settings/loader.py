"""Resolving every option: flag > environment > file (``--config`` / ``CURRENTS_CONFIG``) > default.

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
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource

from consumer.settings.delivery import BATCH_API_DEVICE_RATE
from consumer.settings.fields import GROUPS, Option, OptionError, SettingsError
from consumer.settings.mapping import GLOSSARY_DEFAULTS, names_table
from consumer.settings.model import OPTION_BY_KEY, OPTIONS, Settings


def add_arguments(parser: argparse.ArgumentParser, groups: tuple[str, ...]) -> None:
    """Add ``--config`` and the flags of the option ``groups`` (keys of :data:`GROUPS`: the ones the
    command reads) to a subcommand parser, each under its group's title. Every flag defaults to unset,
    so the loader can tell a given value from the environment's or the file's."""
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown option groups: {', '.join(unknown)}; known: {', '.join(GROUPS)}")
    parser.add_argument(
        "--config", default=None, metavar="PATH", help="TOML config file (env CURRENTS_CONFIG)"
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


def _argument(opt: Option) -> dict[str, Any]:
    """The ``add_argument`` keywords of one option: its help line says the environment variable and
    the default as a person writes it."""
    kwargs: dict[str, Any] = {
        "default": None,
        "help": f"{opt.help} (env {opt.env}; default {opt.shown_default()})".replace("%", "%%"),
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


class Layer(PydanticBaseSettingsSource):
    """One precedence level: raw option values by dotted key, all from the same ``origin``."""

    def __init__(self, values: Mapping[str, Any], origin: str | Mapping[str, str]) -> None:
        super().__init__(Settings)
        self.values = dict(values)
        self._origin = origin

    def origin(self, key: str) -> str:
        """Where the value of ``key`` came from, as ``config`` and errors show it."""
        return self._origin if isinstance(self._origin, str) else self._origin[key]

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
    """Resolve every option: flag > environment > config file > default. Raises :class:`SettingsError`."""
    env = os.environ if env is None else env
    flags = vars(args) if args is not None else {}
    config_path = flags.get("config") or env.get("CURRENTS_CONFIG")
    file_values = _read_file(config_path) if config_path else {}
    unknown = sorted(set(file_values) - set(OPTION_BY_KEY) - {"mapping.names"})
    if unknown:
        raise SettingsError(f"unknown keys in config file {config_path}: {', '.join(unknown)}")
    names = file_values.pop("mapping.names", {})
    levels = [
        Layer({o.key: flags[o.key] for o in OPTIONS if flags.get(o.key) is not None}, "flag"),
        Layer({o.key: env[o.env] for o in OPTIONS if o.env in env}, {o.key: f"env {o.env}" for o in OPTIONS}),
        Layer(file_values, f"file {config_path}"),
    ]
    if _raw(levels, "amplitude.api") == "batch" and _raw(levels, "limits.device_rate") is None:
        levels.append(Layer({"limits.device_rate": BATCH_API_DEVICE_RATE}, "default (batch API)"))
    if _raw(levels, "mapping.profile") == "glossary":
        # MappingConfig applies these too; as a level, ``config`` shows where the values came from
        glossary = {f"mapping.{key}": value for key, value in GLOSSARY_DEFAULTS.items()}
        levels.append(Layer(glossary, "default (glossary profile)"))
    sources = {
        o.key: next((lv.origin(o.key) for lv in levels if o.key in lv.values), "default") for o in OPTIONS
    }
    extra = Layer(
        {"sources": sources, "mapping.names": names_table(names if isinstance(names, dict) else {})}, ""
    )
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
    settings.remerge.store_app_ids()
    return settings


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
