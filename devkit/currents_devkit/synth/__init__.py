"""Realistic synthetic Braze Currents data, generated from the shipped Avro schemas.

Used by tests, benchmarks and the demo. Every record is built by walking its schema's fields, so a
new ``.avsc`` works without code changes: known field names (``external_user_id``, ``email_address``,
``campaign_id``, ``price``, ...) get values that look like Braze's, unknown ones get a value of their
Avro type. Guarantees:

- every record validates against ``parsed_schema(event_type)``;
- the same seed and the same sequence of calls give the same records, files and paths;
- identities are coherent: a device belongs to one user, an ad id matches its platform, campaign and
  Canvas names match their ids; the identity edge cases the exporter must handle are present in
  configurable shares (short, unicode and placeholder external ids, events with no identity at all,
  all-zero IDFAs, hot devices, old timestamps from offline SDK queues);
- float values are exactly representable as Avro ``float`` (32 bit), so a record read back from a
  file equals the record written.

Per-schema field generators are compiled once per ``Synth`` and cached, so producing a record costs
one closure call per field, with no name inspection.

The package holds :class:`Synth` (:mod:`.generator`), which picks who, where from and when for each record.
The pieces
live beside it: :mod:`currents_devkit.synth.values` (value tables), :mod:`currents_devkit.synth.pools` (users,
devices, campaigns), :mod:`currents_devkit.synth.fields` (per-field generators) and
:mod:`currents_devkit.synth.io`
(container files, the Currents storage tree, Kafka framing), whose public names are re-exported here.
"""

from __future__ import annotations

from pathlib import Path

from currents_devkit.synth.generator import Synth
from currents_devkit.synth.io import (
    LAYOUTS,
    avro_body,
    confluent_frame,
    event_type_for_schema_id,
    object_key,
    schema_id_for,
    write_container,
    write_currents_tree,
)
from currents_devkit.synth.values import CLUSTER, DEFAULT_WEIGHTS, ENVIRONMENT, PLACEHOLDER_IDS, ZONE
from currents_devkit.synth.values import CODECS as CODECS  # re-exported, outside __all__ as before

__all__ = [
    "CLUSTER",
    "DEFAULT_WEIGHTS",
    "ENVIRONMENT",
    "LAYOUTS",
    "PLACEHOLDER_IDS",
    "ZONE",
    "Synth",
    "avro_body",
    "confluent_frame",
    "event_type_for_schema_id",
    "generate_sample",
    "object_key",
    "schema_id_for",
    "write_container",
    "write_currents_tree",
]


def generate_sample(
    root: str | Path, n_events: int, seed: int, layout: str = "current", *, now: float | None = None
) -> list[Path]:
    """The demo data set behind ``currents-consumer sample``: a Currents tree under ``root``.

    Two hours, one integration, all three codecs, every shipped event type at realistic weights, and
    three hot devices receiving 8% of the events so that per-device throttling shows. ``layout`` is
    the generation of object keys (:data:`LAYOUTS`); it changes the paths only, never the files.
    With ``now`` (UNIX seconds, ``sample --now``) the files are those Braze is writing at that time:
    one hour, the one ``now`` is in (its ``date=`` folder), with events queued up to ``now``.
    """
    devices = max(20, min(20_000, n_events // 20))
    if now is None:
        synth = Synth(seed, devices=devices, hot_devices=3, hot_share=0.08)
        return write_currents_tree(root, synth, n_events, layout=layout)
    hour = int(now) // 3600 * 3600
    synth = Synth(seed, devices=devices, hot_devices=3, hot_share=0.08, start_time=hour)
    return write_currents_tree(root, synth, n_events, layout=layout, hours=1, until=int(now))
