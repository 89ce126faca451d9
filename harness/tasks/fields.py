"""Reading one field of a user's or a published record: answers, required fields, ids.

Shared by the record layouts of :mod:`harness.tasks.records` (the harness's own and the
papers' file layouts) and :mod:`harness.tasks.published` (the field's benchmarks as their
authors publish them). Errors name the file, the record and the field (``where``).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import yaml

from harness.errors import TaskError


def answer_list(value: Any, where: str) -> tuple[str, ...]:
    """An answer field as a tuple of spellings; lists (NQ-Swap) and strings accepted."""
    if isinstance(value, str) and value.strip().startswith("[") and value.strip().endswith("]"):
        # CSV exports store lists as text ("['fonder.', 'fur.']"); YAML's flow syntax reads
        # them without evaluating anything.
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            pass
    if isinstance(value, (list, tuple)):
        spellings = tuple(str(v).strip() for v in value if str(v).strip())
    elif value is None:
        spellings = ()
    else:
        spellings = (str(value).strip(),) if str(value).strip() else ()
    if not spellings:
        raise TaskError(f"{where}: is empty")
    return spellings


def require(record: Mapping[str, Any], names: Iterable[str], where: str) -> None:
    """A :class:`TaskError` naming the first of ``names`` that ``record`` lacks (or holds None)."""
    for name in names:
        if name not in record or record[name] is None:
            raise TaskError(f"{where}: missing field {name!r}")


def record_id(record: Mapping[str, Any], number: int) -> str:
    """The record's ``id`` field, else its number in the file."""
    return str(record.get("id", number))
