# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""RFC 3339 times, the one way the collection reads and writes them.

CMDOP writes times as RFC 3339 (``2026-11-23T10:00:00Z``); its Go client decodes
the token file's ``expires_at`` as a ``time.Time``, which takes any number of
fraction digits and any UTC offset. ``datetime.fromisoformat`` takes neither
before Python 3.11, so this parses by hand. Pure functions. Private to the collection.
"""

from __future__ import annotations

import calendar
import re
import time
import typing as t

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))?(?![\s\S])"
)


def parse(text: str) -> float:
    """Unix seconds of an RFC 3339 time; a time without an offset is taken as UTC. ValueError if it is none."""
    match = _RFC3339.match(text.strip())
    if match is None:
        raise ValueError("not an RFC 3339 time")
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        raise ValueError("not an RFC 3339 time")
    seconds = float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))
    if match.group(7):
        seconds += float("0." + match.group(7))
    if match.group(9):
        offset = int(match.group(10)) * 3600 + int(match.group(11)) * 60
        seconds -= offset if match.group(9) == "+" else -offset
    return seconds


def format_utc(seconds: float) -> str:
    """An RFC 3339 UTC time to the second (``2026-11-23T10:00:00Z``), as CMDOP writes them."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(seconds)))


def parse_or_none(value: t.Any) -> t.Optional[float]:
    """Unix seconds of an RFC 3339 string, or None for anything else (missing, a number, garbage)."""
    if not isinstance(value, str):
        return None
    try:
        return parse(value)
    except ValueError:
        return None
