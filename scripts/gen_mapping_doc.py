"""Print the side-by-side table of the two mapping profiles in ``docs/mapping.md``, generated from the code.

One row per Currents event type of either profile (the ``seed`` table, ``BRAZE_TYPES``, and the
``glossary`` table built from the packaged glossary): each profile's Amplitude name (after
``--event-prefix``) and ``event_properties`` keys, and the glossary's extra top-level fields.
``tests/test_docs.py`` fails when the generated block in ``docs/mapping.md`` differs from this output.

Usage: ``python scripts/gen_mapping_doc.py`` (print) or ``python scripts/gen_mapping_doc.py --write``
(replace the block between the markers in ``docs/mapping.md``).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from consumer.transform.amplitude_glossary import GLOSSARY  # noqa: E402
from consumer.transform.amplitude_tables import BRAZE_TYPES, TypeSpec, derived_name  # noqa: E402
from scripts.generated_block import END, begin_marker, print_or_write  # noqa: E402

DOC = ROOT / "docs" / "mapping.md"
BEGIN = begin_marker("gen_mapping_doc.py")
_CUSTOM = "users.behaviors.CustomEvent"
_OUTSIDE = "not exported unless enabled; every non-null field"


def _keys(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _name(event_type: str, spec: TypeSpec | None) -> str:
    if event_type == _CUSTOM:
        return "`[Custom Event] <name>`"
    if spec is None:
        return f"({derived_name(event_type)})"
    return f"`{spec.name}`"


def _glossary_top_level(spec: TypeSpec) -> str:
    fields = [key for key, _ in spec.constants] + list(dict.fromkeys(target for _, target in spec.top_level))
    return _keys(fields)


def profiles_table() -> str:
    """The table of every type of either profile, in type order."""
    lines = [
        "| Currents event type | `seed` name | `seed` event_properties | `glossary` name "
        "| `glossary` event_properties | `glossary` top-level fields added |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for event_type in sorted(set(BRAZE_TYPES) | set(GLOSSARY.types)):
        seed, glossary = BRAZE_TYPES.get(event_type), GLOSSARY.types.get(event_type)
        seed_props = _keys(seed.properties) if seed else _OUTSIDE
        glossary_props = _keys(glossary.properties) if glossary else _OUTSIDE
        glossary_top = _glossary_top_level(glossary) if glossary else "`library`"
        lines.append(
            f"| `{event_type}` | {_name(event_type, seed)} | {seed_props} | {_name(event_type, glossary)} "
            f"| {glossary_props} | {glossary_top} |"
        )
    return "\n".join(lines)


def generated() -> str:
    """The whole generated block, markers included."""
    return "\n\n".join((BEGIN, profiles_table(), END))


def main() -> None:
    """Print the block, or with ``--write`` put it into docs/mapping.md."""
    print_or_write(DOC, BEGIN, generated(), sys.argv[1:])


if __name__ == "__main__":
    main()
