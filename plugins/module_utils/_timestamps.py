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

import datetime
import re
import time
import typing as t

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))?(?![\s\S])",
    re.ASCII,
)

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def parse(text: str) -> float:
    """Unix seconds of an RFC 3339 time; a time without an offset is taken as UTC. ValueError if it is none."""
    match = _RFC3339.match(text.strip())
    if match is None:
        raise ValueError("not an RFC 3339 time")
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    offset = 0
    if match.group(9):
        hours, minutes = int(match.group(10)), int(match.group(11))
        if hours > 23 or minutes > 59:
            raise ValueError("not an RFC 3339 time")
        offset = (hours * 3600 + minutes * 60) * (1 if match.group(9) == "+" else -1)
    try:  # datetime refuses February 30th, hour 24, second 60 (as Go's time.Parse does)
        moment = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.timezone(datetime.timedelta(seconds=offset)))
    except ValueError:
        raise ValueError("not an RFC 3339 time") from None
    seconds = float((moment - _EPOCH).total_seconds())
    if match.group(7):
        seconds += float("0." + match.group(7))
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
