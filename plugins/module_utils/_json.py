# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Reading JSON text that someone else wrote: the fleet file, the token file.

``json.loads`` alone would take a byte order mark for an error at column 1, keep the
last of two equal keys (and the rewrite would then lose the first value), and
answer a deeply nested document with a bare ``RecursionError`` (or take it, and
let a later copy of it fail so). ``load`` refuses each with a message that names
the place and the rule, never the text: the text may hold an API key or a token.

Pure functions. Private to the collection.
"""

from __future__ import annotations

import json
import re
import typing as t

# Deeper than any fleet or token file needs (CMDOP's own are 3 levels deep), shallow enough that
# every copy, check and dump of the document stays far from Python's recursion limit.
MAX_DEPTH = 64
_KEY_SAID = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}(?![\s\S])")  # a key shown in a message: a plain name, nothing else


class JsonTextError(ValueError):
    """The text is not JSON this collection reads. The message holds none of the text."""


class _RepeatedKey(ValueError):
    pass


def _unique_keys(pairs: t.List[t.Tuple[str, t.Any]]) -> dict:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: t.Set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return document


def depth(value: t.Any) -> int:
    """How deeply objects and arrays nest in ``value`` (a scalar: 0), found without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def load(text: str, what: str) -> t.Any:
    """The JSON value of ``text``; JsonTextError, saying what is wrong with ``what``, when it is not one this collection reads."""
    if text.startswith("\ufeff"):
        raise JsonTextError("%s starts with a byte order mark (U+FEFF), which JSON text must not" % what)
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except _RepeatedKey as exc:
        key = exc.args[0]
        said = " %r" % key if _KEY_SAID.match(key) else ""
        raise JsonTextError("%s has an object with the key%s twice; which one is meant is not known" % (what, said)) from None
    except RecursionError:
        raise JsonTextError("%s nests deeper than %d levels" % (what, MAX_DEPTH)) from None
    except ValueError as exc:
        # The position, never the text around it.
        raise JsonTextError("%s is not valid JSON (line %s, column %s)" % (what, getattr(exc, "lineno", "?"), getattr(exc, "colno", "?"))) from None
    if depth(value) > MAX_DEPTH:
        raise JsonTextError("%s nests deeper than %d levels" % (what, MAX_DEPTH))
    return value
