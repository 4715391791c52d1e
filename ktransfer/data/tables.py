"""Labelled tables any modality reads: CSV / TSV (a header line first) or JSON lines, one
example per row, its input in one column (a text, an image file) and its label value in another
(`--label_column`). Label values are returned raw (strings, or JSON lists) for the run's task to
parse; a row whose field count differs from the header's, or whose label is empty, is named by
file and line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ktransfer.errors import DataError

TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}
TABLE_EXTENSIONS = (".csv", ".tsv", ".jsonl")

# A text may be long (a whole document); the csv module's own limit is 131,072 characters.
csv.field_size_limit(2**31 - 1)

Row = dict[str, object]


def is_table(path: str | Path) -> bool:
    """Whether `path` names a table file by its extension."""
    return str(path).lower().endswith(TABLE_EXTENSIONS)


def decode(raw: bytes) -> str:
    """UTF-8 (a BOM allowed); undecodable bytes kept as surrogates for a reader to find."""
    return raw.decode("utf-8-sig", errors="surrogateescape")


def table_rows(path: Path, flag: str) -> list[tuple[int, Row]]:
    """(line number, row) of a CSV / TSV (header line first) or JSON-lines file; a CSV row
    with more fields than the header has them under the key None, with fewer the missing ones
    are None. An empty file is a DataError."""
    content = decode(path.read_bytes())
    if path.suffix.lower() == ".jsonl":
        rows = []
        for number, line in enumerate(content.splitlines(), start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise DataError(f"--{flag}: {path}:{number}: not a JSON object ({exc})"
                                    ) from None
                if not isinstance(row, dict):
                    raise DataError(f"--{flag}: {path}:{number}: not a JSON object")
                rows.append((number, row))
    else:
        reader = csv.DictReader(io.StringIO(content, newline=""),
                                delimiter=TABLE_DELIMITERS[path.suffix.lower()])
        rows = [(reader.line_num, row) for row in reader]
    if not rows:
        raise DataError(f"--{flag}: {path} has no rows")
    return rows


def check_columns(path: Path, number: int, row: Row, columns: dict[str, str],
                  flag: str) -> None:
    """DataError unless `row` has every column of `columns` ({column: the flag naming it})."""
    for column, option in columns.items():
        if column not in row:
            have = ", ".join(str(k) for k in row if k is not None)
            raise DataError(f"--{flag}: {path}:{number}: no {column!r} column (it has {have}); "
                            f"name yours with --{option}")


def label_value(row: Row, column: str) -> object:
    """The raw label of a row: a JSON list as it is, anything else as stripped text."""
    raw = row.get(column)
    return raw if isinstance(raw, list) else "" if raw is None else str(raw).strip()


def row_problem(row: Row, label: object, table: bool) -> str:
    """What is wrong with a row ("" when nothing): in a CSV / TSV (`table`), a field count
    other than the header's (an unquoted delimiter inside a field); an empty label."""
    if table:
        extra = row.get(None)  # type: ignore[call-overload]
        header = sum(1 for k in row if k is not None)
        if isinstance(extra, list) and extra:
            return (f"{header + len(extra)} fields where the header has {header} (quote a "
                    "field that holds the delimiter)")
        if any(v is None for k, v in row.items() if k is not None):
            given = sum(1 for k, v in row.items() if k is not None and v is not None)
            return f"{given} field(s) where the header has {header}"
    return "" if label else "empty label"
