"""Golden output of the Amplitude mapping: every byte of every converted event is pinned.

A large, varied synthetic data set (several :class:`~currents_devkit.synth.Synth` seeds, every shipped
event type drawn uniformly, extra purchases, locations and custom events, plus deterministic
edge-case perturbations the generator never makes:
float and ``time_ms`` times, missing ids, placeholder identities, broken ``properties`` JSON, purchase
quantities, advertising ids) is converted under several :class:`MappingConfig` variants. Each variant's
output (one orjson line per record; a skip is ``{"skip": reason}``) is hashed with sha256 and compared,
with the record count, to the digest the implementation produced when this test was written.

The digests were generated with the original, single-function ``Transformer.transform`` before it was
split into per-kind plans, so a refactoring that changes any output byte fails here. When the mapping
changes *on purpose*, regenerate the digests deliberately (``python tests/transform/test_amplitude_golden.py``
prints them) and say why in the commit.
"""

from __future__ import annotations

import hashlib
import pickle
import random
from functools import cache
from typing import Any

import orjson
import pytest
from currents_devkit.synth import Synth

from consumer.decode.schemas import event_types
from consumer.settings import MappingConfig
from consumer.transform.amplitude import Transformer
from consumer.transform.base import Skip

_EMPTY_PREFIXES = MappingConfig(
    event_prefix="",
    custom_event_prefix="",
    custom_property_prefix="",
    purchase_property_prefix="",
    braze_id_property="",
)

VARIANTS: dict[str, MappingConfig] = {
    "default": MappingConfig(),
    "properties_all": MappingConfig(properties="all"),
    "enabled_disabled_globs": MappingConfig(
        enabled=("users.messages.*", "users.canvas.*"), disabled=("users.messages.email.*", "*.Abort")
    ),
    "enabled_everything": MappingConfig(enabled=("*",), disabled=("users.behaviors.app.*",)),
    "names": MappingConfig(
        enabled=("users.messages.whatsapp.*",),
        names={
            "users.behaviors.Purchase": "Order",
            "users.messages.whatsapp.Send": "WA Sent",
            "users.behaviors.CustomEvent": "Never used for custom events",
            "users.behaviors.Location": "",
        },
    ),
    "empty_prefixes": _EMPTY_PREFIXES,
    "device_fields_nested": MappingConfig(device_fields_top_level=False),
    "ad_ids_nested": MappingConfig(ad_ids_top_level=False),
    "all_everything_flat_off": _EMPTY_PREFIXES.model_copy(
        update={
            "properties": "all",
            "enabled": ("*",),
            "device_fields_top_level": False,
            "ad_ids_top_level": False,
        }
    ),
}

# name -> (records converted, events sent, sha256 of the output lines), from the original implementation.
EXPECTED: dict[str, tuple[int, int, str]] = {
    "default": (18601, 8380, "d2df2662c21cefd2c57474ab8734510db7751126d74224b9dc76fdde339caca3"),
    "properties_all": (18601, 8380, "585d109f08b25eab2059dbb109a115db2728ae1c7dfc878a6f308c28259c2473"),
    "enabled_disabled_globs": (
        18601,
        11901,
        "fc94f728338cf86eb2d2780c2c7c15724351b3095a4390ec7d9d4ee99ba727da",
    ),
    "enabled_everything": (18601, 15606, "d1f076098cea95666a3494b8f8942eaedd4454ec1fb8f20c6f906a4224157ba6"),
    "names": (18601, 9510, "b8b5d456b98e1edfde3660cb748c050f07c231d0077b677d9c268d2fef9ac1fa"),
    "empty_prefixes": (18601, 8380, "393915e657c9f94ea216c3566ef41d0949d30ea27ffdeecbda50d74d5f2b9a76"),
    "device_fields_nested": (18601, 8380, "50b26768814366c8d63b4ee76c138dc577c1824b619278878805971f249dd110"),
    "ad_ids_nested": (18601, 8380, "b13d7e938af3618ad0e00ff2cd4db8242c79fe09ffa9c1d6f64cb68dd28518b5"),
    "all_everything_flat_off": (
        18601,
        16142,
        "a39ec34220065570ec192ad5afe59298d05a4b020739ee1000026d3db374ac34",
    ),
}


_KINDS = ("users.behaviors.Purchase", "users.behaviors.Location", "users.behaviors.CustomEvent")
_QUANTITIES = (0, -2, 5, True, 2.0, "3", None)

# Edge cases the generator does not produce: per case, field -> the values drawn from (or how the value
# is derived from the record). A perturbed record gets one case, chosen at random.
_EDGE_CASES: tuple[dict[str, Any], ...] = (
    {"time": lambda r: r.get("time", 0) + 0.75},  # a float time (older schemas, JSON replays)
    {"time_ms": (1_700_000_000_123, None, "1700000000000", 0)},
    {"id": ("", None)},
    {"external_user_id": ("null", " N/A ", "0", "--", "ok-user", "")},
    {"device_id": ("00000000-0000-0000-0000-000000000000", "undefined", None, "d-1")},
    {"properties": ("not json", "[1, 2]", "", "{}", '{"a": {"b": [1]}}', "null", 3)},
    {"properties": tuple(orjson.dumps({"quantity": q, "x": 1}).decode() for q in _QUANTITIES)},
    {
        "ad_id": ("AEBE52E7-03EE-455A-B3C4-E57283966239", "0000-0000", "", None),
        "ad_id_type": ("ios_idfa", "google_adid", "roku_rida", None, ""),
    },
    {"price": (None, 0.0, 19.989999771118164, 1e40, float("nan"), 3)},
    {"latitude": (None, 48.856998443603516, 0.1), "longitude": (None, 2.3519999980926514, -0.1)},
    {"content_card_id": ("card-1", None)},
    {"user_id": ("", None, "5f0c2b7e9d1a4c3b2a190000")},
    {"name": ("", None, "Café Commandé", 7)},
    {"platform": (None, "ios"), "os_version": (None, "17.1"), "device_model": (None, "iPhone15,2")},
    {"product_id": (None, "SKU-1", "")},
    {},  # unchanged
)


def _perturb(rng: random.Random, record: dict[str, Any]) -> None:
    """One deterministic edge case from :data:`_EDGE_CASES`, applied in place."""
    for name, values in _EDGE_CASES[rng.randrange(len(_EDGE_CASES))].items():
        record[name] = values(record) if callable(values) else rng.choice(values)


@cache
def dataset() -> tuple[tuple[str, dict[str, Any]], ...]:
    """The records every variant converts (built once, never mutated afterwards)."""
    types = event_types()
    uniform = [1.0] * len(types)
    synths = (
        Synth(11),
        Synth(12, optional_fill=1.0, placeholder_share=0.1, anonymous_share=0.1, offline_share=0.1),
        Synth(13, optional_fill=0.2, external_id_share=0.3, short_id_share=0.2, unicode_id_share=0.2),
    )
    rng = random.Random(20261201)
    records: list[tuple[str, dict[str, Any]]] = []
    for synth in synths:
        for event_type, record in synth.mixed(5000, types, uniform):
            if rng.random() < 0.3:
                _perturb(rng, record)
            records.append((event_type, record))
        # The kinds with their own parts (revenue, location, custom properties), every edge case.
        for event_type in _KINDS:
            for record in synth.records(event_type, 400):
                _perturb(rng, record)
                records.append((event_type, record))
    # Types outside every table and glob, so each variant also skips something.
    records.append(("users.nothing.Shipped", dict(records[0][1])))
    return tuple(records)


def convert(config: MappingConfig, transformer: Transformer | None = None) -> tuple[int, int, str]:
    """(records converted, events sent, sha256 of one orjson line per record) for ``config``."""
    transformer = transformer or Transformer(config)
    digest = hashlib.sha256()
    count = sent = 0
    for event_type, record in dataset():
        result = transformer.transform(event_type, record)
        if isinstance(result, Skip):
            line = orjson.dumps({"skip": result.reason})
        else:
            line = orjson.dumps(result)
            sent += 1
        digest.update(line + b"\n")
        count += 1
    return count, sent, digest.hexdigest()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_output_is_unchanged(variant: str) -> None:
    assert convert(VARIANTS[variant]) == EXPECTED[variant]


def test_a_transformer_pickled_after_use_converts_the_same() -> None:
    """Mappers are pickled into worker processes; a used one (plans and id verdicts cached) too."""
    config = VARIANTS["all_everything_flat_off"]
    used = Transformer(config)
    for event_type, record in dataset()[:2000]:
        used.transform(event_type, record)
    copy = pickle.loads(pickle.dumps(used))
    assert copy.config == config
    assert convert(config, copy) == EXPECTED["all_everything_flat_off"]


def test_variants_differ() -> None:
    """The variants really exercise different code paths (a config that changed nothing would not)."""
    digests = [digest for _, _, digest in EXPECTED.values()]
    assert len(set(digests)) == len(digests)


if __name__ == "__main__":
    for name in VARIANTS:
        print(f"    {name!r}: {convert(VARIANTS[name])!r},")
