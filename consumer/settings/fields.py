"""The vocabulary every section declares its options with: value types, parsers, secrets, metadata.

An option is one field of a frozen section model, declared with :func:`option`: its type (one of the
aliases here, a ``Literal`` of choices, or :class:`Secret`), default, bounds (``ge``/``gt``/``le``),
flag, environment variable, help, the help group it is listed in (:data:`GROUPS`) and the
metavar a person types in place of its value. Everything else (the argparse flags, the environment
names, the TOML keys, ``config`` output, the generated docs) is derived from that declaration.

The aliases accept two shapes of input: text (a flag or an environment variable), parsed by the
option's parser, and typed TOML values, checked against the option's type. A wrong value raises
``ValueError`` with a message meant for a user; a secret's message never contains the value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict, Unpack

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, SecretStr

from consumer.instants import canonical_instant


class SettingsError(ValueError):
    """An option has a value that cannot be used; the message names the option and its source."""


class OptionError(ValueError):
    """Raised by a section's cross-field check: ``field`` (of that section) is the option to blame."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Secret(SecretStr):
    """A secret string: ``str()``/``repr()`` mask it; only :meth:`reveal` gives the value."""

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self.get_secret_value()

    def _display(self) -> str:
        return "***" if self.get_secret_value() else ""

    def __repr__(self) -> str:
        return f"Secret('{self._display()}')"

    __str__ = __repr__


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``48h``, ``2d``, ``500ms`` or plain seconds -> seconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 48h)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def format_duration(seconds: float) -> str:
    """Seconds as a person writes a duration: ``172800.0`` -> ``48h``, ``0.5`` -> ``0.5s``. Days are
    given in hours (``48h``), as Amplitude's and Braze's documents give retry windows."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off``, any case."""
    lowered = str(text).strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def fold(text: str) -> str:
    """A choice given in any case (``INFO``, ``Info``): compared in lower case."""
    return str(text).strip().lower()


def parse_list(text: str) -> tuple[str, ...]:
    """A comma-separated list; blanks around and between items are dropped."""
    return tuple(part.strip() for part in str(text).split(",") if part.strip())


@dataclass(frozen=True)
class Coerce:
    """A field's before-validator: text goes through ``parse``; a typed value must be ``kind``."""

    parse: Callable[[str], Any]
    kind: type
    secret: bool = False

    def __call__(self, raw: Any) -> Any:
        if self.kind is tuple and isinstance(raw, list | tuple):
            # repeated flags and TOML arrays: every item may itself be a comma-separated list
            return tuple(item for part in raw for item in parse_list(str(part)))
        if isinstance(raw, SecretStr) and self.secret:
            return raw
        if isinstance(raw, str):
            if self.secret:
                return raw
            return self.parse(raw)
        return self._typed(raw)

    def _typed(self, raw: Any) -> Any:
        """A non-string value (from the config file, or given in code), checked against the type."""
        if self.kind is bool:
            if isinstance(raw, bool):
                return raw
        elif isinstance(raw, bool):
            pass  # a TOML boolean is never a number or a string here
        elif self.kind is float:
            if isinstance(raw, int | float):
                return float(raw)
        elif self.kind is int and isinstance(raw, int):
            return raw
        if self.secret:
            raise ValueError("expected a string")  # never echo a secret
        expected = {bool: "true or false", int: "an integer", float: "a number", tuple: "a list"}
        raise ValueError(f"expected {expected.get(self.kind, 'a string')}, got {raw!r}")


def _coerced(parse: Callable[[str], Any], kind: type, secret: bool = False) -> BeforeValidator:
    return BeforeValidator(Coerce(parse, kind, secret))


AS_TEXT = _coerced(str, str)
"""The before-validator of text options, for ``Annotated[Literal[...], AS_TEXT]`` choices."""
AS_FOLDED_TEXT = _coerced(fold, str)
"""Like :data:`AS_TEXT`, but any case of a choice is accepted (``--log-level INFO``)."""
Text = Annotated[str, AS_TEXT]
Int = Annotated[int, _coerced(int, int)]
Float = Annotated[float, _coerced(float, float)]
Duration = Annotated[float, _coerced(parse_duration, float)]
Bool = Annotated[bool, _coerced(parse_bool, bool)]
Words = Annotated[tuple[str, ...], _coerced(parse_list, tuple)]
Instant = Annotated[str, _coerced(canonical_instant, str)]
SecretText = Annotated[Secret, _coerced(str, str, secret=True)]
"""A secret option; its default is given as ``""`` and becomes an empty :class:`Secret`."""


class Section(BaseModel):
    """A frozen group of options handed to one component; unknown fields are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class Traits(TypedDict, total=False):
    """What an option may say besides its names: ``switch`` makes the flag take no value
    (``--event-time``); ``common`` options are those a new user needs (``--help`` lists them and those
    of the enabled destinations, ``--help-all`` every one); ``ge``/``gt``/``le`` bound the value;
    ``metavar`` is what ``--help`` shows in place of the value (default: from the type, see
    :func:`default_metavar`)."""

    switch: bool
    common: bool
    ge: float | None
    gt: float | None
    le: float | None
    metavar: str


def _declared(default: Any, help: str, names: dict[str, JsonValue], traits: Traits) -> Any:
    meta: dict[str, JsonValue] = {
        **names,
        "switch": traits.get("switch", False),
        "metavar": traits.get("metavar", ""),
        "common": traits.get("common", False),
    }
    ge, gt, le = traits.get("ge"), traits.get("gt"), traits.get("le")
    return Field(default, description=help, ge=ge, gt=gt, le=le, json_schema_extra=meta)


def option(default: Any, flag: str, env: str, help: str, *, group: str, **traits: Unpack[Traits]) -> Any:
    """Declare one option: its default, its help and where it can come from (flag, environment; the
    TOML key is the field's path), and its :class:`Traits`. ``group`` is a key of
    :data:`CORE_GROUPS`: the commands that read the option add its group, and ``--help`` lists it
    under the group's title."""
    return _declared(default, help, {"flag": flag, "env": env, "group": group}, traits)


def derived(default: Any, help: str, *, word: str = "", **traits: Unpack[Traits]) -> Any:
    """Declare an option whose names come from where it is declared: in the section ``remerge``, the
    field ``retry_window`` is ``--remerge-retry-window``, ``REMERGE_RETRY_WINDOW`` and
    ``remerge.retry_window``, listed in the group ``remerge``. ``word`` replaces the field's part of the
    flag where it differs (``event_types`` is ``--remerge-event-type``). A base section declares such
    options once for every section that extends it. The rest as :func:`option`."""
    return _declared(default, help, {"flag": "", "word": word, "env": "", "group": ""}, traits)


def derived_names(key: str, meta: dict[str, Any]) -> tuple[str, str, str]:
    """The flag, environment variable and group of the option at dotted ``key`` (declared by
    :func:`option`, or by :func:`derived` and named after ``key``)."""
    section, _, field = key.rpartition(".")
    flag = str(meta["flag"]) or f"--{section.replace('.', '-')}-{meta.get('word') or field.replace('_', '-')}"
    env = str(meta["env"]) or key.upper().replace(".", "_")
    return flag, env, str(meta["group"]) or key.partition(".")[0]


CORE_GROUPS: dict[str, str] = {
    "input": "input selection",
    "follow": "following a bucket",
    "kafka_connection": "Kafka",
    "kafka": "Kafka",
    "destination": "destinations",
    "amplitude": "Amplitude",
    "limits": "limits and retries",
    "mapping": "mapping",
    "workers": "operations",
    "metrics": "operations",
    "logs": "operations",
    "dead_letter": "operations",
    "state": "operations",
}
"""Option groups, in the order ``--help`` shows them, and the title each is listed under. A group is
the unit a command selects (``run`` reads ``dead_letter`` but not ``state``); several groups may
share a title. Each destination but Amplitude adds its own group after ``mapping``
(:data:`consumer.settings.model.GROUPS`)."""

_METAVARS: dict[Callable[[str], Any], str] = {
    parse_duration: "DURATION",
    parse_bool: "true|false",
    int: "N",
    float: "N",
    canonical_instant: "TIME",
}


def default_metavar(parse: Callable[[str], Any], secret: bool) -> str:
    """What ``--help`` shows for a value of this parser when the option declares no metavar."""
    return "SECRET" if secret else _METAVARS.get(parse, "TEXT")


@dataclass(frozen=True)
class Option:
    """One setting as the loader, the ``config`` command and the docs see it (derived, never declared)."""

    key: str  # dotted TOML key, e.g. "amplitude.api_key"; also the Settings attribute path
    flag: str
    env: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    secret: bool = False
    choices: tuple[str, ...] = ()
    repeatable: bool = False
    group: str = "delivery"
    switch: bool = False  # a flag without a value; environment and file say true/false
    bounds: str = ""  # e.g. "at least 1", for out-of-range messages
    metavar: str = ""  # what --help shows for the value; empty for choices and switches
    common: bool = False  # listed by --help (the others by --help-all)

    @property
    def file_flag(self) -> str:
        """A secret's flag naming a file that holds it (``--api-key-file``): see :func:`read_secret`."""
        return f"{self.flag}-file"

    @property
    def file_env(self) -> str:
        """A secret's environment variable naming a file that holds it (``AMPLITUDE_API_KEY_FILE``), the
        ``_FILE`` convention of official container images."""
        return f"{self.env}_FILE"

    @property
    def file_key(self) -> str:
        """A secret's TOML key naming a file that holds it (``amplitude.api_key_file``)."""
        return f"{self.key}_file"

    def shown_default(self) -> str:
        """The default as a person writes it (see :meth:`shown`); ``none`` for a secret."""
        return "none" if self.secret else self.shown(self.default)

    def shown(self, value: Any) -> str:
        """A value of this option as a person writes it: ``48h``, ``true``, ``30``, ``a,b``,
        ``'[Appboy] '`` (quoted when blanks are part of it), ``none`` for an empty list or text."""
        if self.parse is parse_duration and isinstance(value, int | float):
            return format_duration(float(value))
        if isinstance(value, tuple | list):
            return ",".join(value) or "none"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, float):
            return f"{value:g}"
        if value == "":
            return "none"
        if isinstance(value, str) and value != value.strip():
            return repr(value)
        return str(value)


def read_secret(path: str, flag: str, where: str) -> str:
    """The secret held in the file ``path`` (a mounted Secret, ``echo KEY > file``), its trailing
    newlines stripped; :class:`SettingsError` naming ``flag``, ``where`` it was named and the path if
    the file cannot be read or holds nothing. Nothing of its content is ever part of a message."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise SettingsError(f"{flag} (from {where}): cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{flag} (from {where}): {path} is not UTF-8 text") from None
    text = text.rstrip("\r\n")
    if not text:
        raise SettingsError(f"{flag} (from {where}): {path} is empty")
    return text
