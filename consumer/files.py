"""Finding and reading Currents Avro files laid out as Currents writes storage.

Following Braze's advice, files are found by listing everything under the given paths (any depth),
never by parsing their names; the path's ``event_type=`` segment is only a fallback for the event type
when a file's writer schema has no usable name. Hidden files and obvious non-Avro side files
(``_SUCCESS``, ``.crc``) are passed over.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from consumer.decode import DecodeError, iter_container
from consumer.events import CurrentsRecord, Position

_SIDE_FILE_SUFFIXES = (".crc", ".json", ".txt", ".md", ".tmp")


def list_files(paths: list[str]) -> Iterator[str]:
    """Every candidate file under ``paths`` (files are taken as given), sorted per directory.

    A path that does not exist raises ``FileNotFoundError`` naming it, before anything is read.
    """
    for raw in paths:
        if not os.path.exists(raw):
            raise FileNotFoundError(f"no such file or directory: {raw}")
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            yield str(path)
            continue
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith((".", "_")) or name.endswith(_SIDE_FILE_SUFFIXES):
                    continue
                yield os.path.join(root, name)


def read_file(path: str, *, skip: int = 0) -> Iterator[CurrentsRecord]:
    """Records of one local container file, starting after the first ``skip`` records.

    Raises :class:`DecodeError` (with the file and record index) when the file is unreadable or
    corrupt; records before the damage have been yielded by then.
    """
    try:
        fo = open(path, "rb")  # noqa: SIM115 - closed in finally; a generator must hold it open
    except OSError as exc:
        raise DecodeError(Position(path, -1, 0), f"cannot open: {exc.strerror or exc}") from exc
    try:
        for record in iter_container(fo, path):
            if record.position.offset >= skip:
                yield record
    finally:
        fo.close()
