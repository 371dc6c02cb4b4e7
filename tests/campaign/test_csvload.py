"""The contacts CSV: every bad row reported as file:line with what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebot.campaign.csvload import load_contacts, load_dnc, parse_contacts
from voicebot.campaign.errors import ContactsError


def test_good_file_gives_contacts_with_variables_and_lines() -> None:
    contacts = parse_contacts(
        "number,name,date,tz\n"
        "+1 (555) 010-0001,Anna,Monday,America/New_York\n"
        "\n"
        "sip:bob@127.0.0.1:5070,Bob,Tuesday,\n",
        "c.csv")
    assert [(c.number, c.tz, c.variables, c.line) for c in contacts] == [
        ("+15550100001", "America/New_York", {"name": "Anna", "date": "Monday"}, 2),
        ("sip:bob@127.0.0.1:5070", None, {"name": "Bob", "date": "Tuesday"}, 4),
    ]


@pytest.mark.parametrize(("text", "problems"), [
    ("number,name\n12ab,Anna\n",
     ["c.csv:2: number '12ab' is not a phone number (+ and 3-15 digits) or a sip: URI"]),
    ("number,tz\n+15550100001,Mars/Olympus\n",
     ["c.csv:2: time zone 'Mars/Olympus' is not a known IANA zone (e.g. Europe/Berlin)"]),
    ("number\n+15550100001\n+1 555 010 0001\n",
     ["c.csv:3: number +15550100001 is a duplicate of line 2"]),
    ("number,name\n+15550100001\n", ["c.csv:2: 1 fields, the header has 2"]),
    ("name\nAnna\n", ["c.csv:1: no 'number' column in the header ['name']"]),
    ("number,first name\n+15550100001,A\n",
     ["c.csv:1: column 'first name' is not a variable name (letters, digits, _)"]),
    ("", ["c.csv:1: empty file: expected a header row with a 'number' column"]),
    ("number\n", ["c.csv: no contacts (only a header)"]),
    # a quoted field spanning two lines: the next row's line is still the physical one
    ('number,note\n+15550100001,"two\nlines"\nbad,x\n',
     ["c.csv:4: number 'bad' is not a phone number (+ and 3-15 digits) or a sip: URI"]),
    # every problem at once
    ("number,tz\nx,UTC\n+15550100001,Nowhere\n",
     ["c.csv:2: number 'x' is not a phone number (+ and 3-15 digits) or a sip: URI",
      "c.csv:3: time zone 'Nowhere' is not a known IANA zone (e.g. Europe/Berlin)"]),
])
def test_bad_rows_are_reported_with_file_and_line(text: str, problems: list[str]) -> None:
    with pytest.raises(ContactsError) as info:
        parse_contacts(text, "c.csv")
    assert info.value.problems == problems


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ContactsError, match="cannot read the contacts file"):
        load_contacts(tmp_path / "missing.csv")


def test_dnc_numbers_are_normalized_like_contacts(tmp_path: Path) -> None:
    path = tmp_path / "dnc.txt"
    path.write_text("# opted out\n+1 555 010 0001\n\nsip:x@127.0.0.1  # a test line\n")
    assert load_dnc(path) == frozenset({"+15550100001", "sip:x@127.0.0.1"})
