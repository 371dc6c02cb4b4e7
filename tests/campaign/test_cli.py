"""``voicebot campaign`` without dialing: create validates (file:line for the CSV, the dialplan,
the settings), the control commands move the state, status and export read the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voicebot.cli import main

pytestmark = pytest.mark.unit

PLAN = Path(__file__).parent / "dialplans" / "notice.yaml"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def create(tmp_path: Path, capsys: pytest.CaptureFixture[str], csv_text: str,
           *extra: str) -> tuple[int, str, str]:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(csv_text)
    return run(capsys, "campaign", "--campaign-db", str(tmp_path / "c.db"), "create", "spring",
               "--contacts", str(contacts), "--dialplan", str(PLAN), *extra)


def test_create_reports_every_bad_row_with_file_and_line(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = create(tmp_path, capsys,
                          "number,tz\n+15550100001,UTC\nnope,UTC\n+1 555 010 0001,Nowhere\n")
    path = tmp_path / "contacts.csv"
    assert code == 2
    assert err.splitlines() == [
        f"{path}:3: number 'nope' is not a phone number (+ and 3-15 digits) or a sip: URI",
        f"{path}:4: number +15550100001 is a duplicate of line 2",
        f"{path}:4: time zone 'Nowhere' is not a known IANA zone (e.g. Europe/Berlin)",
    ]
    assert not (tmp_path / "c.db").exists() or run(
        capsys, "campaign", "--campaign-db", str(tmp_path / "c.db"), "status", "spring")[0] == 2


@pytest.mark.parametrize(("extra", "message"), [
    (("--window", "20:00-09:00"), "calling window '20:00-09:00' must end after it starts, on the same day"),
    (("--tz", "Mars/Base"), "default time zone 'Mars/Base' is not a known IANA zone (e.g. Europe/Berlin)"),
    (("--max-concurrent", "0"), "max_concurrent must be at least 1, got 0"),
    (("--calls-per-s", "0"), "calls_per_s must be positive, got 0.0"),
])
def test_create_rejects_bad_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     extra: tuple[str, ...], message: str) -> None:
    code, _, err = create(tmp_path, capsys, "number\nsip:a@127.0.0.1\n", *extra)
    assert code == 2 and err.strip() == f"voicebot campaign create: {message}"


def test_phone_numbers_need_a_trunk_proxy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = create(tmp_path, capsys, "number\n+15550100001\n")
    assert code == 2
    assert "contact +15550100001 is a phone number but the campaign has no trunk proxy" in err
    code, _, _ = create(tmp_path, capsys, "number\n+15550100001\n", "--proxy", "sip:127.0.0.1:5099")
    assert code == 0


def test_control_status_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "c.db")
    assert create(tmp_path, capsys, "number,name\nsip:a@127.0.0.1,Anna\nsip:b@127.0.0.1,Bob\n")[0] == 0
    code, _, err = create(tmp_path, capsys, "number\nsip:a@127.0.0.1\n")
    assert code == 2 and "campaign 'spring' already exists" in err
    assert run(capsys, "campaign", "--campaign-db", db, "pause", "spring")[1].strip() == \
        "campaign spring: created -> paused"
    assert run(capsys, "campaign", "--campaign-db", db, "resume", "spring")[1].strip() == \
        "campaign spring: paused -> running"
    assert run(capsys, "campaign", "--campaign-db", db, "cancel", "spring")[0] == 0
    code, _, err = run(capsys, "campaign", "--campaign-db", db, "resume", "spring")
    assert code == 2 and err.strip() == \
        "voicebot campaign resume: campaign 'spring' is cancelled; it cannot become running"
    code, out, _ = run(capsys, "campaign", "--campaign-db", db, "status", "spring", "--json")
    assert json.loads(out) == {"campaign": "spring", "state": "cancelled", "attempts": 0,
                               "contacts": {"pending": 2}}
    code, out, _ = run(capsys, "campaign", "--campaign-db", db, "export", "spring")
    assert out.splitlines() == [
        "number,line,status,final_outcome,attempts,answer_type,last_cause,last_call_id,finished_at,var_name",
        "sip:a@127.0.0.1,2,pending,,0,,,,,Anna",
        "sip:b@127.0.0.1,3,pending,,0,,,,,Bob",
    ]
    code, _, err = run(capsys, "campaign", "--campaign-db", db, "status", "autumn")
    assert code == 2 and "no campaign 'autumn'" in err


def test_create_refuses_a_do_not_call_list_it_cannot_read(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "dnc.txt"
    code, _, err = create(tmp_path, capsys, "number\nsip:a@127.0.0.1\n", "--dnc", str(missing))
    assert code == 2
    assert err.strip() == (f"voicebot campaign create: cannot read the do-not-call list {missing}: "
                           "No such file or directory")
    missing.write_bytes(b"\xff\xfe+1555\n")
    code, _, err = create(tmp_path, capsys, "number\nsip:a@127.0.0.1\n", "--dnc", str(missing))
    assert code == 2 and "is not UTF-8 text" in err
    missing.write_text("+1 555 0100\n")
    assert create(tmp_path, capsys, "number\nsip:a@127.0.0.1\n", "--dnc", str(missing))[0] == 0
