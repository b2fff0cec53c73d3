"""The one :class:`Settings` object, and :data:`OPTIONS`: every option, derived from the sections.

:data:`OPTIONS` is read off the section models (in declaration order), never written by hand: the
flag, environment variable and help come from each field's :func:`~consumer.settings.fields.option`,
the TOML key from the field's path, the choices from its ``Literal`` type, the bounds from its
``Field`` constraints.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal, TypeVar, overload

from annotated_types import Ge, Gt, Le
from pydantic import AfterValidator, Field, ModelWrapValidatorHandler, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, InitErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from consumer.settings.delivery import AmplitudeSettings, DestinationSection, LimitSettings
from consumer.settings.destinations import names, registry
from consumer.settings.fields import (
    AS_FOLDED_TEXT,
    AS_TEXT,
    CORE_GROUPS,
    Coerce,
    Duration,
    Int,
    Option,
    Secret,
    Section,
    Text,
    Words,
    default_metavar,
    derived_names,
    option,
)
from consumer.settings.mapping import MappingConfig
from consumer.settings.sources import FollowSettings, InputSettings, KafkaSettings


def _known_destinations(chosen: tuple[str, ...]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(chosen))  # in order, once each
    known = names()
    unknown = [d for d in chosen if d not in known]
    if unknown or not chosen:
        raise ValueError(f"{', '.join(unknown) or 'none given'}; choose among {', '.join(known)}")
    return chosen


DEAD_LETTER_TOPIC = "kafka://"
"""How ``--dead-letter`` names a topic of the ``--bootstrap-servers`` cluster instead of a directory."""
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def dead_letter_topic(target: str) -> str | None:
    """The topic ``--dead-letter kafka://TOPIC`` names, or ``None`` when it names a directory."""
    return target[len(DEAD_LETTER_TOPIC) :] if target.startswith(DEAD_LETTER_TOPIC) else None


def _dead_letter_target(target: str) -> str:
    topic = dead_letter_topic(target)
    if topic is not None and (not _TOPIC_NAME.fullmatch(topic) or topic in (".", "..")):
        raise ValueError(
            f"{target!r}: kafka://TOPIC takes a Kafka topic name (letters, digits, '.', '_', '-'; 1 to 249)"
        )
    return target


S = TypeVar("S", bound=DestinationSection)


class Settings(BaseSettings):
    """Everything a command needs, resolved once and frozen. ``sources`` says where each value came from.

    Built by :func:`consumer.settings.load` from flags, environment and file; built directly
    (``Settings(...)``) it takes only the given values and defaults: it never reads ``os.environ``.

    Every destination of the registry (:mod:`consumer.settings.destinations`) has its section here under
    its name (``settings.section("remerge")``, ``[remerge]`` in TOML), Amplitude's as a declared field,
    the others added from the registry; any other unknown key is refused.
    """

    model_config = SettingsConfigDict(frozen=True, extra="allow", validate_default=True)

    amplitude: AmplitudeSettings = Field(default_factory=AmplitudeSettings)
    destinations: Annotated[Words, AfterValidator(_known_destinations)] = option(
        ("amplitude",),
        "--destination",
        "CURRENTS_DESTINATIONS",
        "destinations every event goes to (repeatable)",
        group="destination",
        metavar="{" + ",".join(names()) + "}",
        common=True,
    )
    limits: LimitSettings = Field(default_factory=LimitSettings)
    dead_letter: Annotated[str, AS_TEXT, AfterValidator(_dead_letter_target)] = option(
        "dead-letter",
        "--dead-letter",
        "CURRENTS_DEAD_LETTER",
        "dead-letter directory (JSON lines), or kafka://TOPIC of --bootstrap-servers (run, redrive)",
        group="dead_letter",
        metavar="PATH|kafka://TOPIC",
        common=True,
    )
    state_dir: Text = option(
        ".currents-state",
        "--state-dir",
        "CURRENTS_STATE_DIR",
        "where replay keeps its resume state and its job lock: a directory, or an s3://, gs://, az:// "
        "prefix ('' = keep none)",
        group="state",
        metavar="PATH|URL",
        common=True,
    )
    lock_wait: Duration = option(
        0.0,
        "--lock-wait",
        "CURRENTS_LOCK_WAIT",
        "how long to wait for the job's lock when another process holds it before exiting 2 (0 = at once)",
        group="state",
        ge=0,
    )
    lock_lease: Duration = option(
        60.0,
        "--lock-lease",
        "CURRENTS_LOCK_LEASE",
        "in a bucket, how long a lock not renewed stays held (a holder that died frees it after this; "
        "renewed every third of it)",
        group="state",
        ge=3,
    )
    input: InputSettings = Field(default_factory=InputSettings)
    follow: FollowSettings = Field(default_factory=FollowSettings)
    mapping: MappingConfig = Field(default_factory=MappingConfig)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    metrics_port: Int = option(
        0,
        "--metrics-port",
        "CURRENTS_METRICS_PORT",
        "port for /metrics, /livez, /readyz (0 = off)",
        group="metrics",
        metavar="PORT",
        ge=0,
        le=65535,
    )
    log_format: Annotated[Literal["auto", "json", "text"], AS_TEXT] = option(
        "auto",
        "--log-format",
        "CURRENTS_LOG_FORMAT",
        "log lines: json, text, or auto (text on a tty)",
        group="logs",
    )
    log_level: Annotated[Literal["debug", "info", "warning", "error"], AS_FOLDED_TEXT] = option(
        "info",
        "--log-level",
        "CURRENTS_LOG_LEVEL",
        "least severe log lines written (any case)",
        group="logs",
    )
    sources: Mapping[str, str] = Field(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _destination_sections(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        """Validate each registered destination's section (given or default) and refuse unknown keys;
        every problem is reported at once, at its option's location, as pydantic reports a field's."""
        if not isinstance(data, Mapping):
            return handler(data)
        data = dict(data)
        errors: list[InitErrorDetails] = []
        for spec in registry():
            if spec.name in cls.model_fields:
                continue
            given = data.get(spec.name, {})
            if isinstance(given, spec.section):
                continue
            try:
                data[spec.name] = spec.section.model_validate(given)
            except ValidationError as exc:
                errors += [_at(spec.name, error) for error in exc.errors()]
                del data[spec.name]
        known = set(cls.model_fields) | set(names())
        errors += [
            InitErrorDetails(type="extra_forbidden", loc=(key,), input=data.pop(key))
            for key in [key for key in data if key not in known]
        ]
        try:
            settings = handler(data)
        except ValidationError as exc:
            errors = [_at(None, error) for error in exc.errors()] + errors
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return settings

    @overload
    def section(self, name: str) -> DestinationSection: ...
    @overload
    def section(self, name: str, kind: type[S]) -> S: ...
    def section(self, name: str, kind: type[DestinationSection] = DestinationSection) -> DestinationSection:
        """The settings section of the destination called ``name`` (checked to be a ``kind``)."""
        value = getattr(self, name)
        if not isinstance(value, kind):
            raise TypeError(f"the section {name!r} is a {type(value).__name__}, not a {kind.__name__}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the given values: the environment is read by :func:`~consumer.settings.load`, with its
        own names per option and provenance, never implicitly."""
        return (init_settings,)

    def describe(self) -> dict[str, Any]:
        """Effective configuration with secrets masked, for ``currents-consumer config``."""
        out: dict[str, Any] = {}
        for opt in OPTIONS:
            value = self.value_of(opt.key)
            if isinstance(value, Secret):
                value = "***" if value else ""
            elif isinstance(value, tuple):
                value = list(value)
            out[opt.key] = {"value": value, "source": self.sources.get(opt.key, "default")}
        out["mapping.names"] = {
            "value": dict(self.mapping.names),
            "source": self.sources.get("mapping.names", "file" if self.mapping.names else "default"),
        }
        return out

    def value_of(self, key: str) -> Any:
        """The value of the option at dotted ``key`` (e.g. ``"amplitude.region"``)."""
        obj: Any = self
        for part in key.split("."):
            obj = getattr(obj, part)
        return obj


def _at(section: str | None, error: ErrorDetails) -> InitErrorDetails:
    """``error`` as a line of a new :class:`ValidationError`, located under ``section`` if given."""
    loc = error["loc"] if section is None else (section, *error["loc"])
    line = InitErrorDetails(type=error["type"], loc=loc, input=error["input"])
    if "ctx" in error:
        line["ctx"] = error["ctx"]
    return line


def _bounds(info: FieldInfo) -> str:
    ge: Any = next((m.ge for m in info.metadata if isinstance(m, Ge)), None)
    gt: Any = next((m.gt for m in info.metadata if isinstance(m, Gt)), None)
    le: Any = next((m.le for m in info.metadata if isinstance(m, Le)), None)
    if ge is not None and le is not None:
        return f"{ge} to {le}"
    if gt is not None:
        return f"more than {gt}"
    if ge is not None:
        return f"at least {ge}" if ge > 0 else f"{ge} or more"
    return ""


def _option_of(key: str, info: FieldInfo) -> Option:
    meta = info.json_schema_extra
    assert isinstance(meta, dict)
    coerce = next(m.func for m in info.metadata if isinstance(getattr(m, "func", None), Coerce))
    assert isinstance(coerce, Coerce)
    literal = typing.get_origin(info.annotation) is Literal
    flag, env, group = derived_names(key, meta)
    return Option(
        key=key,
        flag=flag,
        env=env,
        default="" if coerce.secret else info.default,
        help=info.description or "",
        parse=coerce.parse,
        secret=coerce.secret,
        choices=tuple(typing.get_args(info.annotation)) if literal else (),
        repeatable=coerce.kind is tuple,
        group=group,
        switch=bool(meta["switch"]),
        common=bool(meta.get("common")),
        bounds=_bounds(info),
        metavar=""
        if literal or meta["switch"]
        else str(meta["metavar"] or default_metavar(coerce.parse, coerce.secret)),
    )


def _walk(model: type[BaseSettings] | type[Section], prefix: str = "") -> Iterator[Option]:
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, Section):
            yield from _walk(kind, f"{prefix}{name}.")
        elif isinstance(info.json_schema_extra, dict) and "flag" in info.json_schema_extra:
            yield _option_of(prefix + name, info)
        if model is Settings and name == "destinations":  # the other destinations' sections follow
            for spec in registry():
                if spec.name not in Settings.model_fields:
                    yield from _walk(spec.section, f"{spec.name}.")


def _groups() -> dict[str, str]:
    out: dict[str, str] = {}
    for key, title in CORE_GROUPS.items():
        out[key] = title
        if key == "mapping":
            out.update((spec.name, spec.title) for spec in registry() if spec.name not in out)
    return out


GROUPS = _groups()
"""Every option group, in the order ``--help`` shows them, with its title: the core groups
(:data:`~consumer.settings.fields.CORE_GROUPS`) and each destination's after ``mapping``."""

OPTIONS: tuple[Option, ...] = tuple(_walk(Settings))
"""Every option, in the order of the sections: what flags, environment, file, docs and ``config`` use."""
OPTION_BY_KEY = {o.key: o for o in OPTIONS}
