"""The contacts CSV: a header row with ``number`` (required), optionally ``tz``, and any other
columns, which become the contact's dialplan variables (``name``, ``date``, ...).

Every problem is reported, not just the first, as ``file:line: problem`` with the CSV's physical
line number, so an operator fixes a 10 000-row file in one pass.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from voicebot.campaign.errors import CampaignError, ContactsError
from voicebot.campaign.model import Contact, check_tz, normalize_number

_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_PROBLEMS = 50  # more than this and the file is probably the wrong one


def load_contacts(path: Path) -> list[Contact]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ContactsError([f"{path}: cannot read the contacts file: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ContactsError([f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from exc
    return parse_contacts(text, str(path))


def parse_contacts(text: str, name: str = "<contacts>") -> list[Contact]:
    reader = csv.reader(io.StringIO(text, newline=""))
    problems: list[str] = []
    try:
        header = next(reader)
    except StopIteration:
        raise ContactsError([f"{name}:1: empty file: expected a header row with a 'number' column"]) from None
    header = [h.strip() for h in header]
    if "number" not in header:
        raise ContactsError([f"{name}:1: no 'number' column in the header {header}"])
    seen_columns: set[str] = set()
    for column in header:
        if column in seen_columns:
            problems.append(f"{name}:1: column {column!r} appears twice")
        seen_columns.add(column)
        if column not in ("number", "tz") and not _VARIABLE.match(column):
            problems.append(f"{name}:1: column {column!r} is not a variable name (letters, digits, _)")
    if problems:
        raise ContactsError(problems)
    contacts: list[Contact] = []
    first_line: dict[str, int] = {}
    line = reader.line_num
    for row in reader:
        row_line, line = line + 1, reader.line_num  # a quoted field may span lines: report the first
        if not any(cell.strip() for cell in row):
            continue
        where = f"{name}:{row_line}"
        if len(row) != len(header):
            problems.append(f"{where}: {len(row)} fields, the header has {len(header)}")
        else:
            values = {h: cell.strip() for h, cell in zip(header, row, strict=True)}
            raw = values.pop("number")
            tz = values.pop("tz", "") or None
            number = normalize_number(raw)
            if number is None:
                problems.append(f"{where}: number {raw!r} is not a phone number (+ and 3-15 digits) "
                                "or a sip: URI")
            elif number in first_line:
                problems.append(f"{where}: number {number} is a duplicate of line {first_line[number]}")
            if tz is not None and not check_tz(tz):
                problems.append(f"{where}: time zone {tz!r} is not a known IANA zone (e.g. Europe/Berlin)")
            if number is not None and number not in first_line:
                first_line[number] = row_line
                contacts.append(Contact(number, number, tz, values, row_line))
        if len(problems) >= MAX_PROBLEMS:
            problems.append(f"{name}: stopped after {MAX_PROBLEMS} problems")
            break
    if problems:
        raise ContactsError(problems)
    if not contacts:
        raise ContactsError([f"{name}: no contacts (only a header)"])
    return contacts


def load_dnc(path: Path) -> frozenset[str]:
    """A do-not-call list: one number per line (``#`` comments); numbers are normalized like contacts'.
    :class:`CampaignError` when it cannot be read (missing, a directory, not UTF-8): a campaign must
    not dial without its list."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CampaignError(f"cannot read the do-not-call list {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CampaignError(f"the do-not-call list {path} is not UTF-8 text ({exc.reason} at byte "
                            f"{exc.start})") from exc
    numbers: set[str] = set()
    for raw in text.splitlines():
        text = raw.split("#", 1)[0].strip()
        if text:
            numbers.add(normalize_number(text) or text)
    return frozenset(numbers)


__all__ = ["load_contacts", "load_dnc", "parse_contacts"]
