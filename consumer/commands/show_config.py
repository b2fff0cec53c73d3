"""What ``currents-consumer config`` prints: a table for a person at a terminal, JSON otherwise.

Both are made from :meth:`~consumer.settings.Settings.describe`, whose secrets are already masked
(``***``), so neither form can show one. The table lists every option under the titles ``--help``
uses, with its value written as a person would type it (``48h``, ``true``) and where it came from;
the JSON is the exact form scripts, tests and the docs read, unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from consumer.settings.model import GROUPS, OPTIONS

NAMES_KEY = "mapping.names"
VALUE_WIDTH = 32


def as_json(described: Mapping[str, Mapping[str, Any]]) -> str:
    """The configuration as indented JSON: ``{key: {"value": ..., "source": ...}}``."""
    return json.dumps(described, indent=2, default=str)


def as_table(described: Mapping[str, Mapping[str, Any]]) -> str:
    """The configuration as aligned columns (option, value, source), one block per help title."""
    blocks: dict[str, list[tuple[str, str, str]]] = {title: [] for title in GROUPS.values()}
    for opt in OPTIONS:
        entry = described[opt.key]
        blocks[GROUPS[opt.group]].append((opt.flag, opt.shown(entry["value"]), str(entry["source"])))
    names = described.get(NAMES_KEY)
    if names is not None:
        count = len(names["value"])
        shown = f"{count} event type(s) renamed" if count else "none"
        blocks[GROUPS["mapping"]].append((f"[{NAMES_KEY}]", shown, str(names["source"])))
    rows = [row for block in blocks.values() for row in block]
    flag_width = max(len("option"), *(len(flag) for flag, _, _ in rows))
    # a long list (the partners' event types) pushes only its own row's source to the right
    value_width = min(VALUE_WIDTH, max(len("value"), *(len(value) for _, value, _ in rows)))
    lines = [f"  {'option':<{flag_width}}  {'value':<{value_width}}  source"]
    for title, block in blocks.items():
        if not block:
            continue
        lines.append("")
        lines.append(f"{title}:")
        lines.extend(
            f"  {flag:<{flag_width}}  {value:<{value_width}}  {source}" for flag, value, source in block
        )
    return "\n".join(lines)
