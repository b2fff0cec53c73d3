"""One settings object, built once from flags, environment and an optional TOML file.

Every option is declared once, as a field of a frozen section model (pydantic), with its type,
bounds, default, flag, environment variable and help; its TOML key is the field's path. Precedence
is flag > environment > file (``--config`` / ``CURRENTS_CONFIG``) > default. The result is a frozen
:class:`Settings`; secrets are :class:`Secret` values that never print. Components receive their own
section and never read ``os.environ`` themselves.

Modules: :mod:`.fields` (value types, parsers, option metadata), :mod:`.delivery`, :mod:`.partners`,
:mod:`.sources`, :mod:`.mapping` (the sections), :mod:`.model` (:class:`Settings`, :data:`OPTIONS`),
:mod:`.load` (precedence, flags, errors).
"""

from consumer.settings.delivery import AmplitudeSettings, LimitSettings
from consumer.settings.fields import Option, Secret, SettingsError, parse_duration
from consumer.settings.load import add_arguments, load
from consumer.settings.mapping import MappingConfig, PropertyMode
from consumer.settings.model import OPTION_BY_KEY, OPTIONS, Settings
from consumer.settings.partners import DESTINATIONS, MovableInkSettings, RemergeSettings
from consumer.settings.sources import InputSettings, KafkaSettings

__all__ = [
    "DESTINATIONS",
    "OPTIONS",
    "OPTION_BY_KEY",
    "AmplitudeSettings",
    "InputSettings",
    "KafkaSettings",
    "LimitSettings",
    "MappingConfig",
    "MovableInkSettings",
    "Option",
    "PropertyMode",
    "RemergeSettings",
    "Secret",
    "Settings",
    "SettingsError",
    "add_arguments",
    "load",
    "parse_duration",
]
