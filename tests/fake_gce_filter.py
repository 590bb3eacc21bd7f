"""The `filter` of Compute Engine's list calls, as tests/fake_gce.py understands it.

The subset a provider needs, with Compute's meaning: `FIELD = VALUE`, `!=`, `:` (substring; `:*` is "present"),
`eq` and `ne` (a regular expression matching the whole value), a dotted FIELD into the resource's JSON
(`labels.group`, `status`, `scheduling.provisioningModel`), values bare or quoted, `NOT`, parentheses, `AND`
(also implied between two expressions) and `OR` (weaker than AND). Anything else is refused, as Compute refuses
a filter it cannot parse: the fake never silently matches more than it was asked to.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]

TOKEN = re.compile(
    r"""\s*(?:(?P<paren>[()])|(?P<op>!=|=|:)|"(?P<double>[^"]*)"|'(?P<single>[^']*)'|(?P<word>[^\s()!=:"']+))"""
)
WORD_OPERATORS = {"eq", "ne"}


class FilterError(ValueError):
    """The filter is not one the fake understands; the API answers 400."""


def parse(text: str) -> Predicate:
    """A predicate over a resource's JSON; an empty filter matches everything."""
    tokens = _tokens(text)
    if not tokens:
        return lambda resource: True
    parser = _Parser(tokens)
    predicate = parser.expression()
    if parser.position != len(tokens):
        raise FilterError(f"unexpected {tokens[parser.position][1]!r}")
    return predicate


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs: kind is "paren", "op", "quoted" or "word"."""
    tokens, position = [], 0
    while text[position:].strip():
        match = TOKEN.match(text, position)
        if match is None:
            raise FilterError(f"cannot read {text[position:]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        tokens.append(("quoted" if kind in ("double", "single") else kind, value))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent: expression := conjunction (OR conjunction)*; conjunction := unit (AND? unit)*;
    unit := ( expression ) | NOT unit | FIELD OPERATOR VALUE."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise FilterError("the filter ends too soon")
        self.position += 1
        return token

    def expression(self) -> Predicate:
        alternatives = [self.conjunction()]
        while self.peek() == ("word", "OR"):
            self.take()
            alternatives.append(self.conjunction())
        return lambda resource: any(alternative(resource) for alternative in alternatives)

    def conjunction(self) -> Predicate:
        parts = [self.unit()]
        while (token := self.peek()) is not None and token not in (("paren", ")"), ("word", "OR")):
            if token == ("word", "AND"):
                self.take()
            parts.append(self.unit())
        return lambda resource: all(part(resource) for part in parts)

    def unit(self) -> Predicate:
        token = self.take()
        if token == ("paren", "("):
            inner = self.expression()
            if self.take() != ("paren", ")"):
                raise FilterError("a parenthesis is not closed")
            return inner
        if token == ("word", "NOT"):
            negated = self.unit()
            return lambda resource: not negated(resource)
        if token[0] != "word":
            raise FilterError(f"expected a field name, found {token[1]!r}")
        return self.comparison(token[1])

    def comparison(self, field: str) -> Predicate:
        operator = self.take()
        if operator[0] != "op" and not (operator[0] == "word" and operator[1] in WORD_OPERATORS):
            raise FilterError(f"expected an operator after {field!r}, found {operator[1]!r}")
        kind, value = self.take()
        if kind not in ("word", "quoted"):
            raise FilterError(f"expected a value after {field} {operator[1]}")
        path = field.split(".")
        test = _comparison(operator[1], value, present_test=operator[1] == ":" and value == "*" and kind == "word")
        return lambda resource: test(_field(resource, path))


def _comparison(operator: str, value: str, *, present_test: bool) -> Callable[[str | None], bool]:
    if present_test:
        return lambda found: found is not None
    if operator == "=":
        return lambda found: found == value
    if operator == "!=":
        return lambda found: found != value
    if operator == ":":
        return lambda found: found is not None and value in found
    try:
        pattern = re.compile(value)
    except re.error as error:
        raise FilterError(f"bad regular expression {value!r}: {error}") from error
    if operator == "eq":
        return lambda found: found is not None and pattern.fullmatch(found) is not None
    return lambda found: found is None or pattern.fullmatch(found) is None


def _field(resource: dict[str, Any], path: list[str]) -> str | None:
    """The value at a dotted path as Compute compares it (booleans as true/false), or None when absent."""
    value: Any = resource
    for name in path:
        if not isinstance(value, dict) or name not in value:
            return None
        value = value[name]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return None
    return str(value)
