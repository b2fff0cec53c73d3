"""One settings object, built once from flags, environment and an optional TOML file.

Every option is declared once, as a field of a frozen section model (pydantic), with its type,
bounds, default, flag, environment variable and help; its TOML key is the field's path. Precedence
is flag > environment > file (``--config`` / ``CURRENTS_CONFIG``) > default. The result is a frozen
:class:`Settings`; secrets are :class:`Secret` values that never print. Components receive their own
section and never read ``os.environ`` themselves.

Modules: :mod:`.fields` (value types, parsers, option metadata), :mod:`.delivery`, :mod:`.partners`,
:mod:`.sources`, :mod:`.mapping` (the sections), :mod:`.destinations` (the registry of destinations),
:mod:`.model` (:class:`Settings`, :data:`OPTIONS`), :mod:`.loader` (precedence, flags, errors).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from consumer.settings.delivery import AmplitudeSettings, LimitSettings
    from consumer.settings.destinations import DestinationSpec, names, registry
    from consumer.settings.fields import Option, Secret, SettingsError, parse_duration
    from consumer.settings.loader import add_arguments, load
    from consumer.settings.mapping import MappingConfig, PropertyMode
    from consumer.settings.model import OPTION_BY_KEY, OPTIONS, Settings
    from consumer.settings.sources import InputSettings, KafkaSettings

# Loaded on first use (PEP 562): a worker process that only unpickles a mapper needs the section it
# holds (``MappingConfig``), not pydantic-settings and every other section (about 70 ms per worker).
_MODULE_OF = {
    "AmplitudeSettings": "delivery",
    "DestinationSpec": "destinations",
    "InputSettings": "sources",
    "KafkaSettings": "sources",
    "LimitSettings": "delivery",
    "MappingConfig": "mapping",
    "OPTIONS": "model",
    "OPTION_BY_KEY": "model",
    "Option": "fields",
    "PropertyMode": "mapping",
    "Secret": "fields",
    "Settings": "model",
    "SettingsError": "fields",
    "add_arguments": "loader",
    "load": "loader",
    "names": "destinations",
    "registry": "destinations",
    "parse_duration": "fields",
}


def __getattr__(name: str) -> Any:
    try:
        module = _MODULE_OF[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "OPTIONS",
    "OPTION_BY_KEY",
    "AmplitudeSettings",
    "DestinationSpec",
    "InputSettings",
    "KafkaSettings",
    "LimitSettings",
    "MappingConfig",
    "Option",
    "PropertyMode",
    "Secret",
    "Settings",
    "SettingsError",
    "add_arguments",
    "load",
    "names",
    "parse_duration",
    "registry",
]
