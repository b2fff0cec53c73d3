"""Golden output of the Amplitude mapping: every byte of every converted event is pinned.

A large, varied synthetic data set (several :class:`~currents_devkit.synth.Synth` seeds, every shipped
event type drawn uniformly, plus deterministic edge-case perturbations the generator never makes:
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
import random
from dataclasses import replace
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
    "all_everything_flat_off": replace(
        _EMPTY_PREFIXES,
        properties="all",
        enabled=("*",),
        device_fields_top_level=False,
        ad_ids_top_level=False,
    ),
}

# name -> (records converted, events sent, sha256 of the output lines), from the original implementation.
EXPECTED: dict[str, tuple[int, int, str]] = {
    "default": (15001, 5317, "a53f4fde39bc75a746e3f83d0044a22ddc4a9f5e22570970113c1cc99e0686ae"),
    "properties_all": (15001, 5317, "70cb22300c86ef21567422c61fe878125e4a5997e11cf8d709a96cc91ddd898f"),
    "enabled_disabled_globs": (
        15001,
        8850,
        "86318f56185e1c6fee85d0a640b70651473f4a1e2f9710bca89ae1dbd0bde838",
    ),
    "enabled_everything": (15001, 12540, "1327f90b398bffb1f1538163b1d86d3c4747c60fdfa84212aa727334a9dc935a"),
    "names": (15001, 6453, "a5d85a0f360e7360386046f8714801d36811d810fc0c27060e415afbb6f3c9e3"),
    "empty_prefixes": (15001, 5317, "14063cc95eabcbe375b9e3293a4b85d1f769a5d772ec73aa3961ad96d1f4a396"),
    "device_fields_nested": (15001, 5317, "4088d086ab5d2a86979efcbd46c9ca7fbc5fcb55ab77eadaa1dfde19ace61f4f"),
    "ad_ids_nested": (15001, 5317, "17d7a981bfd40eead705780ae81039510d3c74acf5f4fed0641c06493b6fed8f"),
    "all_everything_flat_off": (
        15001,
        13083,
        "8903892804359ce707873454c67f47da1553314b0b686cce8ef18ecde5d45e09",
    ),
}


def _perturb(rng: random.Random, record: dict[str, Any]) -> None:
    """One deterministic edge case the generator does not produce, applied in place."""
    choice = rng.randrange(16)
    if choice == 0:
        record["time"] = record.get("time", 0) + 0.75  # a float time (older schemas, JSON replays)
    elif choice == 1:
        record["time_ms"] = rng.choice((1_700_000_000_123, None, "1700000000000", 0))
    elif choice == 2:
        record["id"] = rng.choice(("", None))
    elif choice == 3:
        record["external_user_id"] = rng.choice(("null", " N/A ", "0", "--", "ok-user", ""))
    elif choice == 4:
        record["device_id"] = rng.choice(("00000000-0000-0000-0000-000000000000", "undefined", None, "d-1"))
    elif choice == 5:
        record["properties"] = rng.choice(("not json", "[1, 2]", "", "{}", '{"a": {"b": [1]}}', "null", 3))
    elif choice == 6:
        quantity = rng.choice((0, -2, 5, True, 2.0, "3", None))
        record["properties"] = orjson.dumps({"quantity": quantity, "x": 1}).decode()
    elif choice == 7:
        record["ad_id"] = rng.choice(("AEBE52E7-03EE-455A-B3C4-E57283966239", "0000-0000", "", None))
        record["ad_id_type"] = rng.choice(("ios_idfa", "google_adid", "roku_rida", None, ""))
    elif choice == 8:
        record["price"] = rng.choice((None, 0.0, 19.989999771118164, 1e40, float("nan"), 3))
    elif choice == 9:
        record["latitude"] = rng.choice((None, 48.856998443603516, 0.1))
        record["longitude"] = rng.choice((None, 2.3519999980926514, -0.1))
    elif choice == 10:
        record["content_card_id"] = rng.choice(("card-1", None))
    elif choice == 11:
        record["user_id"] = rng.choice(("", None, "5f0c2b7e9d1a4c3b2a190000"))
    elif choice == 12:
        record["name"] = rng.choice(("", None, "Café Commandé", 7))
    elif choice == 13:
        record["platform"] = rng.choice((None, "ios"))
        record["os_version"] = rng.choice((None, "17.1"))
        record["device_model"] = rng.choice((None, "iPhone15,2"))
    elif choice == 14:
        record["product_id"] = rng.choice((None, "SKU-1", ""))
    # 15: unchanged


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
    # Types outside every table and glob, so each variant also skips something.
    records.append(("users.nothing.Shipped", dict(records[0][1])))
    return tuple(records)


def convert(config: MappingConfig) -> tuple[int, int, str]:
    """(records converted, events sent, sha256 of one orjson line per record) for ``config``."""
    transformer = Transformer(config)
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


def test_variants_differ() -> None:
    """The variants really exercise different code paths (a config that changed nothing would not)."""
    digests = [digest for _, _, digest in EXPECTED.values()]
    assert len(set(digests)) == len(digests)


if __name__ == "__main__":
    for name in VARIANTS:
        print(f"    {name!r}: {convert(VARIANTS[name])!r},")
