"""Metric names used by a PromQL expression, without a full PromQL parser.

A small lexer is enough because only one question is asked: *which series names does this
expression select?* Functions and aggregations (an identifier before ``(``), keywords
(``by``, ``offset``, ``and``...), label names (inside ``{...}`` and ``by (...)``), durations,
numbers, strings and Grafana variables (``$__rate_interval``) are all skipped.

Example::

    >>> sorted(promql_metric_names(
    ...     'histogram_quantile(0.95, sum by (le, exchange) (rate(ingest_latency_ms_bucket[5m]))) > 5'))
    ['ingest_latency_ms_bucket']
    >>> sorted(promql_metric_names('sum(rate(a_total{x="y"}[5m])) / on (job) group_left b offset 1h'))
    ['a_total', 'b']
"""
from __future__ import annotations

import re

#: Keywords that look like identifiers but never name a series.
KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "and", "or", "unless", "atan2", "inf", "nan",
})
#: Keywords followed by a parenthesised list of label names (not metric names).
_LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<variable>\$\{[^}]*\}|\$\$?\w+|\[\[\w+\]\])
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w:]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<punct>[(){}\[\],@]|[^\s\w"'`$(){}\[\],@]+)
    """,
    re.VERBOSE,
)


class PromQLSyntaxError(ValueError):
    """The expression cannot be tokenised (unterminated string, stray character...)."""


def _tokens(expr: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise PromQLSyntaxError(f"cannot tokenise PromQL at offset {pos}: {expr[pos:pos + 20]!r} in {expr!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind not in ("ws", "comment"):
            tokens.append((kind, m.group()))
    return tokens


def _skip_group(tokens: list[tuple[str, str]], i: int, open_: str, close: str) -> int:
    """Index just past the group opened at ``tokens[i]`` (which is ``open_``)."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j] == ("punct", open_):
            depth += 1
        elif tokens[j] == ("punct", close):
            depth -= 1
            if depth == 0:
                return j + 1
    raise PromQLSyntaxError(f"unbalanced {open_!r}{close!r}")


def _name_matchers(tokens: list[tuple[str, str]]) -> set[str]:
    """``__name__="x"`` equality matchers inside one ``{...}`` group."""
    names = set()
    for k in range(len(tokens) - 2):
        if tokens[k] == ("ident", "__name__") and tokens[k + 1] == ("punct", "=") and tokens[k + 2][0] == "string":
            names.add(tokens[k + 2][1][1:-1])
    return names


def promql_metric_names(expr: str) -> set[str]:
    """Every metric (series) name that the PromQL expression ``expr`` selects.

    Raises :class:`PromQLSyntaxError` for input that is not even lexically PromQL.

    Example::

        >>> promql_metric_names('increase(gate_close_total{reason!="manual"}[1h]) > bool 3')
        {'gate_close_total'}
        >>> promql_metric_names('{__name__="ws_conn_state", exchange="replay"} == 0')
        {'ws_conn_state'}
    """
    tokens = _tokens(expr)
    names: set[str] = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if (kind, text) == ("punct", "{"):
            end = _skip_group(tokens, i, "{", "}")
            names |= _name_matchers(tokens[i:end])
            i = end
        elif (kind, text) == ("punct", "["):
            i = _skip_group(tokens, i, "[", "]")  # range or subquery: durations and variables only
        elif kind == "ident" and text.lower() in _LABEL_LIST_KEYWORDS and nxt == ("punct", "("):
            i = _skip_group(tokens, i + 1, "(", ")")
        elif kind == "ident" and text.lower() in KEYWORDS:
            i += 1
        elif kind == "ident" and (nxt == ("punct", "(") or (nxt[0] == "ident" and nxt[1].lower() in ("by", "without"))):
            i += 1  # function call, or aggregation with its grouping first: sum by (le) (...)
        elif kind == "ident":
            names.add(text)
            i += 1
        else:
            i += 1
    return names
