"""Labelled tables any modality reads: CSV / TSV (a header line first) or JSON lines, one
example per row, its input in one column (a text, an image file) and its label value in another
(`--label_column`). Label values are returned raw (strings, or JSON lists) for the run's task to
parse; a row whose field count differs from the header's, or whose label is empty or a JSON
object, is named by file and the line it starts on.

CSV and TSV are read as Python's csv module writes them (RFC 4180: a quoted field may hold the
delimiter, quotes as "" and line breaks); a quote that does not close cannot swallow the rows
after it (see `_delimited_rows`)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ktransfer.errors import DataError, first_line

TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}
TABLE_EXTENSIONS = (".csv", ".tsv", ".jsonl")

# A text may be long (a whole document); the csv module's own limit is 131,072 characters.
csv.field_size_limit(2**31 - 1)

Row = dict[str, object]


class Line(int):
    """A row's line number (as an int); `swallowed`: how many lines after it an unclosed quote
    on this line would have taken (the row was read again without quoting)."""

    swallowed: int

    def __new__(cls, number: int, swallowed: int = 0) -> Line:
        line = super().__new__(cls, number)
        line.swallowed = swallowed
        return line


def is_table(path: str | Path) -> bool:
    """Whether `path` names a table file by its extension."""
    return str(path).lower().endswith(TABLE_EXTENSIONS)


def decode(raw: bytes) -> str:
    """UTF-8 (a BOM allowed); undecodable bytes kept as surrogates for a reader to find."""
    return raw.decode("utf-8-sig", errors="surrogateescape")


def table_rows(path: Path, flag: str) -> list[tuple[Line, Row]]:
    """(line, row) of a CSV / TSV (header line first) or JSON-lines file; a CSV row with more
    fields than the header has them under the key None, with fewer the missing ones are None.
    An empty file is a DataError."""
    content = decode(path.read_bytes())
    if path.suffix.lower() == ".jsonl":
        rows = [(Line(number), _json_row(line, f"--{flag}: {path}:{number}"))
                for number, line in enumerate(content.splitlines(), start=1) if line.strip()]
    else:
        rows = _delimited_rows(content, TABLE_DELIMITERS[path.suffix.lower()])
    if not rows:
        raise DataError(f"--{flag}: {path} has no rows")
    return rows


def _json_row(line: str, where: str) -> Row:
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise DataError(f"{where}: not a JSON object ({first_line(exc)})") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deep to read; a row is one object such as "
                        '{"text": "...", "label": "..."}') from None
    if not isinstance(row, dict):
        raise DataError(f"{where}: not a JSON object")
    return row


def _delimited_rows(content: str, delimiter: str) -> list[tuple[Line, Row]]:
    """Rows of a CSV / TSV as `csv.DictReader` gives them, each with the line it starts on.

    A quote opens a field that may hold line breaks (RFC 4180). Where one does not close
    properly it swallows the rows after it: a row over several lines whose field count is
    wrong, or (TSV) whose field holds a line break followed by a tab, is read again line by
    line without quoting, so each of those lines is a row of its own again."""
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    header = next(reader, [])
    lines = io.StringIO(content, newline="").readlines()  # as the reader counts them
    rows, start = [], reader.line_num + 1
    for fields in reader:
        end = reader.line_num
        if fields and end > start and _swallowed(fields, header, delimiter):
            rows += [(Line(start + i, end - start if i == 0 else 0), _row(header, again))
                     for i, again in enumerate(csv.reader(lines[start - 1:end],
                                                          delimiter=delimiter,
                                                          quoting=csv.QUOTE_NONE)) if again]
        elif fields:
            rows.append((Line(start), _row(header, fields)))
        start = end + 1
    return rows


def _swallowed(fields: list[str], header: list[str], delimiter: str) -> bool:
    return len(fields) != len(header) or (delimiter == "\t" and any(
        delimiter in part for field in fields for part in field.split("\n")[1:]))


def _row(header: list[str], fields: list[str]) -> Row:
    """`csv.DictReader`'s row: extra fields under the key None, missing ones None."""
    row: Row = dict(zip(header, fields[:len(header)], strict=False))
    row.update({name: None for name in header[len(fields):]})
    if len(fields) > len(header):
        row[None] = fields[len(header):]  # type: ignore[index]
    return row


def check_columns(path: Path, number: int, row: Row, columns: dict[str, str],
                  flag: str) -> None:
    """DataError unless `row` has every column of `columns` ({column: the flag naming it})."""
    for column, option in columns.items():
        if column not in row:
            have = ", ".join(str(k) for k in row if k is not None)
            raise DataError(f"--{flag}: {path}:{number}: no {column!r} column (it has {have}); "
                            f"name yours with --{option}")


def label_value(row: Row, column: str) -> object:
    """The raw label of a row: a JSON list or object as it is, anything else as stripped
    text (JSON null as empty)."""
    raw = row.get(column)
    return raw if isinstance(raw, list | dict) else "" if raw is None else str(raw).strip()


def row_problem(row: Row, label: object, table: bool, line: int = 0) -> str:
    """What is wrong with a row ("" when nothing): in a CSV / TSV (`table`), a field count
    other than the header's (an unquoted delimiter inside a field, or a quote that swallowed
    the lines after it); an empty label, or a JSON object as a label."""
    if table:
        extra = row.get(None)  # type: ignore[call-overload]
        header = sum(1 for k in row if k is not None)
        taken = getattr(line, "swallowed", 0)
        swallowed = (f"; its quote does not close (it would take the next {taken} line(s) "
                     "with it): close or remove that quote" if taken else "")
        if isinstance(extra, list) and extra:
            return (f"{header + len(extra)} fields where the header has {header} (quote a "
                    f"field that holds the delimiter){swallowed}")
        if any(v is None for k, v in row.items() if k is not None):
            given = sum(1 for k, v in row.items() if k is not None and v is not None)
            return f"{given} field(s) where the header has {header}{swallowed}"
    if isinstance(label, dict):
        return (f"the label is a JSON object {json.dumps(label)[:60]}; give a string (or, for "
                "several labels, a list of strings)")
    return "" if label else "empty label"
