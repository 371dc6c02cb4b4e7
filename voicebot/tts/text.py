"""English text normalization for speech: what a prompt's digits and symbols should sound like.

Synthesizers read "$1,234.50" as "dollar one comma two three four..." or "one thousand two hundred
thirty-four point five zero", "2026-12-06" as a subtraction and "14:30" as "fourteen thirty". This
module rewrites such tokens into the words a person would say, before the text reaches Piper or
espeak-ng. Pure functions, no I/O. The rules, in the order they are applied:

- money: ``$1,234.50`` -> "one thousand two hundred thirty-four dollars and fifty cents"
  (also ``€`` euros/cents and ``£`` pounds/pence);
- ISO dates: ``2026-12-06`` -> "December sixth, twenty twenty-six" (invalid dates are left alone);
- times: ``14:30`` -> "two thirty PM", ``9:05 am`` -> "nine oh five AM", ``12:00`` -> "twelve noon";
- digit strings: a number of five or more digits without thousands separators (account, order and
  phone numbers), a number with a leading zero, and dash- or space-grouped digits such as
  ``555-123-4567`` are read digit by digit ("five five five, one two three, ...");
- percentages, ordinals (``21st``), decimals (``3.75``), negative numbers and plain cardinals.

``TEXT_NORMALIZER_VERSION`` is part of every synthesizer's cache key: bump it whenever a rule
changes what is said, so cached prompts are re-rendered instead of served with the old reading.
"""

from __future__ import annotations

import re
from collections.abc import Callable

TEXT_NORMALIZER_VERSION = 1

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "€": ("euro", "euros", "cent", "cents"),
               "£": ("pound", "pounds", "penny", "pence")}


def cardinal(n: int) -> str:
    """``1234`` -> "one thousand two hundred thirty-four" (American style, no "and")."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {cardinal(rest)}" if rest else "")
    for scale, name in _SCALES:
        if n >= scale:
            high, rest = divmod(n, scale)
            return f"{cardinal(high)} {name}" + (f" {cardinal(rest)}" if rest else "")
    raise AssertionError("unreachable")


def ordinal(n: int) -> str:
    """``21`` -> "twenty-first"."""
    words = cardinal(n)
    cut = max(words.rfind(" "), words.rfind("-")) + 1
    head, last = words[:cut], words[cut:]
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + last


def digits(text: str) -> str:
    """``"4507"`` -> "four five zero seven"."""
    # isdecimal, not isdigit: '²' is a digit that int() refuses; '٤' (Arabic-Indic four) is decimal
    # and int() reads it, as the rules' \d does
    return " ".join(_ONES[int(d)] for d in text if d.isdecimal())


def year(n: int) -> str:
    """How a year is said: 2026 "twenty twenty-six", 2005 "two thousand five", 1905 "nineteen oh five"."""
    if 2000 <= n <= 2009 or n % 1000 == 0 or n < 1000 or n > 9999:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    if low < 10:
        return f"{cardinal(high)} oh {cardinal(low)}"
    return f"{cardinal(high)} {cardinal(low)}"


def clock_time(hour: int, minute: int, meridiem: str | None = None) -> str:
    """``(14, 30)`` -> "two thirty PM"; with ``meridiem`` ("AM"/"PM") the hour is already 12-hour."""
    if meridiem is None:
        if hour == 12 and minute == 0:
            return "twelve noon"
        if hour in (0, 24) and minute == 0:
            return "twelve midnight"
        meridiem = "PM" if 12 <= hour < 24 else "AM"
        hour = hour % 12 or 12
    if minute == 0:
        spoken_minute = ""
    elif minute < 10:
        spoken_minute = f" oh {cardinal(minute)}"
    else:
        spoken_minute = f" {cardinal(minute)}"
    return f"{cardinal(hour)}{spoken_minute} {meridiem}"


def money(symbol: str, whole_text: str, cents_text: str | None) -> str:
    one, many, sub_one, sub_many = _CURRENCIES[symbol]
    whole = _whole_number(whole_text)
    cents = int((cents_text + "0")[:2]) if cents_text else 0
    parts = []
    if whole != "zero" or not cents:
        parts.append(f"{whole} {one if whole == 'one' else many}")
    if cents:
        parts.append(f"{cardinal(cents)} {sub_one if cents == 1 else sub_many}")
    return " and ".join(parts)


def _whole_number(text: str) -> str:
    """Digits, thousands commas allowed, said as one number ("" is zero); digit by digit when they
    are more than int() converts (4300 by default, CVE-2020-10735), which no one says as a number."""
    plain = text.replace(",", "") or "0"
    try:
        return cardinal(int(plain))
    except ValueError:
        return digits(plain)


def _decimal(text: str) -> str:
    whole, _, frac = text.partition(".")
    spoken = _whole_number(whole)
    return f"{spoken} point {digits(frac)}" if frac else spoken


# ---- the rules ---------------------------------------------------------------------------------

_MONEY_RE = re.compile(r"([$€£])\s?(\d{1,3}(?:,\d{3})+|\d+)?(?:\.(\d{1,2}))?(?![\d.,]*\d)")
_DATE_RE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_TIME_RE = re.compile(r"\b([01]?\d|2[0-4]):([0-5]\d)(?!:?\d)(?:\s*([AaPp])\.?\s?[Mm]\b\.?)?")
_GROUPED_DIGITS_RE = re.compile(r"(?<![\w.,])\d{2,}(?:[- ]\d{2,}){1,}(?![\w.,]*\d)")
_PERCENT_RE = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)\s?%")
_ORDINAL_RE = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_NUMBER_RE = re.compile(r"(?<![\w.])(-)?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w,]*\d)")


def _money(m: re.Match[str]) -> str:
    if m.group(2) is None and m.group(3) is None:
        return m.group(0)
    return money(m.group(1), m.group(2) or "", m.group(3))


def _date(m: re.Match[str]) -> str:
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1 <= mo <= 12 and 1 <= d <= _DAYS_IN_MONTH[mo - 1]):
        return m.group(0)
    return f"{_MONTHS[mo - 1]} {ordinal(d)}, {year(y)}"


def _time(m: re.Match[str]) -> str:
    hour, minute, letter = int(m.group(1)), int(m.group(2)), m.group(3)
    if letter is not None:
        if not 1 <= hour <= 12:
            return m.group(0)
        return clock_time(hour, minute, "AM" if letter in "Aa" else "PM")
    if hour == 24 and minute != 0:
        return m.group(0)
    return clock_time(hour, minute)


def _grouped(m: re.Match[str]) -> str:
    # A comma between groups gives the listener the pause a person makes when reading it out.
    return ", ".join(digits(group) for group in re.split(r"[- ]", m.group(0)))


def _percent(m: re.Match[str]) -> str:
    value = m.group(1)
    sign = "minus " if value.startswith("-") else ""
    return f"{sign}{_decimal(value.lstrip('-'))} percent"


def _ordinal(m: re.Match[str]) -> str:
    # "21th" is a typo for "21st": the number says which ordinal is meant, not the letters.
    try:
        return ordinal(int(m.group(1)))
    except ValueError:  # more digits than int() converts: no ordinal anyone says
        return digits(m.group(1))


def _number(m: re.Match[str]) -> str:
    minus, whole, frac = m.group(1), m.group(2), m.group(3)
    if "," not in whole and frac is None and (len(whole) >= 5 or (len(whole) > 1 and whole[0] == "0")):
        spoken = digits(whole)  # an account, order or phone number, not a quantity
    else:
        spoken = _decimal(whole + (frac or ""))
    return ("minus " if minus else "") + spoken


_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (_MONEY_RE, _money),
    (_DATE_RE, _date),
    (_TIME_RE, _time),
    (_GROUPED_DIGITS_RE, _grouped),
    (_PERCENT_RE, _percent),
    (_ORDINAL_RE, _ordinal),
    (_NUMBER_RE, _number),
)


def normalize_for_speech(text: str) -> str:
    """``text`` with its numbers, money, dates and times written out as words."""
    for pattern, replace in _RULES:
        text = pattern.sub(replace, text)
    return text


_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+(?=\S)")
_CLAUSE_BREAK_RE = re.compile(r"[,;:]\s+|\s+(?=(?:and|but|or|so|because|which|then)\s)")
_DIGIT_WORD = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)"
# Weaker: before a verb or preposition, where a long subject or phrase ends, or before a number read
# digit by digit ("The balance of account | seven eight seven zero ... | is ...").
_PHRASE_BREAK_RE = re.compile(
    r"\s+(?=(?:is|are|was|were|will|on|at|for|in|of|to|with|from|as)\s)|"
    + "".join(f"(?<!{w})" for w in _DIGIT_WORD[3:-1].split("|"))  # the start of the number only
    + rf"\s+(?={_DIGIT_WORD}(?:\s+{_DIGIT_WORD}){{2,}}\b)"
)
_PHRASE_MIN_WORDS = 3  # a shorter head ("The balance") is no phrase a speaker would pause after


def first_clause_split(text: str, *, max_chars: int = 40, min_chars: int = 8) -> tuple[str, str]:
    """Split off a short first clause of ``text`` so streaming synthesis can start speaking sooner.

    Neural TTS time grows with the sentence, so a long first sentence delays the first audio of a
    dynamic prompt. When the first sentence is longer than ``max_chars``, cut it, in this order of
    preference, at: the last clause boundary (a comma, semicolon or colon, or before a conjunction)
    between ``min_chars`` and ``max_chars``; the last phrase boundary there (before a verb or a
    preposition, or before a number read digit by digit, after at least three words); the first
    clause boundary within ``2 * max_chars``; the last phrase boundary within that; the first
    clause boundary at all. The cut falls where a speaker may pause anyway. Returns
    ``(head, rest)``; ``rest`` is empty when there is nothing worth cutting.
    """
    text = text.strip()
    parts = _SENTENCE_END_RE.split(text, maxsplit=1)
    first = parts[0]
    if len(first) <= max_chars:
        return text, ""

    def fits(m: re.Match[str]) -> bool:
        return m.start() >= min_chars and len(first) - m.end() >= min_chars

    clauses = [m for m in _CLAUSE_BREAK_RE.finditer(first) if fits(m)]
    phrases = [m for m in _PHRASE_BREAK_RE.finditer(first)
               if fits(m) and len(first[:m.start()].split()) >= _PHRASE_MIN_WORDS]
    short = [m for m in clauses if m.start() <= max_chars] or [m for m in phrases if m.start() <= max_chars]
    longer = [m for m in clauses if m.start() <= 2 * max_chars][:1] or [
        m for m in phrases if m.start() <= 2 * max_chars]
    candidates = short or longer or clauses[:1]
    if not candidates:
        return text, ""
    cut = candidates[-1]
    head = first[:cut.start()] + (first[cut.start()] if first[cut.start()] in ",;:" else "")
    return head, text[cut.end():]
