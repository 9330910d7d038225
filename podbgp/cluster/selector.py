"""Label selectors in Calico's syntax: parse once, then match label maps.

Owns the selector grammar used by ``IPPool.nodeSelector``, ``BGPPeer.nodeSelector`` and
``BGPPeer.peerSelector``. Supported forms (Calico's common ones)::

    all()                     every node
    key == 'value'            the label is present with that value
    key != 'value'            the label is absent or has another value
    has(key)  /  !has(key)    the label is (not) present
    key in {'a', 'b'}         the label's value is one of the set
    key not in {'a', 'b'}     absent, or a value outside the set
    !expr   expr && expr   expr || expr   ( expr )

``&&`` binds tighter than ``||``; strings take single or double quotes. A parsed selector is a
tree of frozen dataclasses whose ``str()`` is the canonical text. Implements no RFC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ALL", "Selector", "SelectorError", "parse_selector"]

Labels = Mapping[str, str]


class SelectorError(ValueError):
    """A selector that does not parse; ``str()`` says what and where (1-based column)."""


@dataclass(frozen=True)
class All:
    def matches(self, labels: Labels) -> bool:
        return True

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True)
class Equals:
    key: str
    value: str

    def matches(self, labels: Labels) -> bool:
        return labels.get(self.key) == self.value

    def __str__(self) -> str:
        return f"{self.key} == {_quote(self.value)}"


@dataclass(frozen=True)
class NotEquals:
    key: str
    value: str

    def matches(self, labels: Labels) -> bool:
        return labels.get(self.key) != self.value

    def __str__(self) -> str:
        return f"{self.key} != {_quote(self.value)}"


@dataclass(frozen=True)
class Has:
    key: str

    def matches(self, labels: Labels) -> bool:
        return self.key in labels

    def __str__(self) -> str:
        return f"has({self.key})"


@dataclass(frozen=True)
class In:
    key: str
    values: frozenset[str]

    def matches(self, labels: Labels) -> bool:
        value = labels.get(self.key)
        return value is not None and value in self.values

    def __str__(self) -> str:
        return f"{self.key} in {_set(self.values)}"


@dataclass(frozen=True)
class NotIn:
    key: str
    values: frozenset[str]

    def matches(self, labels: Labels) -> bool:
        return labels.get(self.key) not in self.values

    def __str__(self) -> str:
        return f"{self.key} not in {_set(self.values)}"


@dataclass(frozen=True)
class Not:
    expr: Selector

    def matches(self, labels: Labels) -> bool:
        return not self.expr.matches(labels)

    def __str__(self) -> str:
        if isinstance(self.expr, Has):
            return f"!{self.expr}"
        return f"!({self.expr})"


@dataclass(frozen=True)
class And:
    terms: tuple[Selector, ...]

    def matches(self, labels: Labels) -> bool:
        return all(t.matches(labels) for t in self.terms)

    def __str__(self) -> str:
        return " && ".join(f"({t})" if isinstance(t, Or) else str(t) for t in self.terms)


@dataclass(frozen=True)
class Or:
    terms: tuple[Selector, ...]

    def matches(self, labels: Labels) -> bool:
        return any(t.matches(labels) for t in self.terms)

    def __str__(self) -> str:
        return " || ".join(str(t) for t in self.terms)


Selector = All | Equals | NotEquals | Has | In | NotIn | Not | And | Or
ALL = All()


def _quote(value: str) -> str:
    return f'"{value}"' if "'" in value else f"'{value}'"


def _set(values: frozenset[str]) -> str:
    return "{" + ", ".join(_quote(v) for v in sorted(values)) + "}"


# --- tokenizer --------------------------------------------------------------------------------

# Label keys as Kubernetes allows them: an optional DNS prefix and '/', then the name.
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<op>&&|\|\||==|!=|[!(){},])
    | (?P<str>'[^']*'|"[^"]*")
    | (?P<word>[A-Za-z0-9_./-]+)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # "op", "str", "word", "end"
    text: str
    column: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            col = pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1
            raise SelectorError(f"unexpected character {text[col - 1]!r} at column {col}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        tokens.append(_Token(kind, value, match.start(kind) + 1))
        pos = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


# --- parser (recursive descent: or -> and -> unary -> primary) --------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text or token.kind not in ("op", "word"):
            raise self.error(token, f"expected {text!r}")

    def error(self, token: _Token, problem: str) -> SelectorError:
        found = "end of selector" if token.kind == "end" else repr(token.text)
        return SelectorError(f"{problem} at column {token.column}, found {found}")

    def parse(self) -> Selector:
        expr = self.or_expr()
        token = self.peek()
        if token.kind != "end":
            raise self.error(token, "expected && or || or the end")
        return expr

    def or_expr(self) -> Selector:
        terms = [self.and_expr()]
        while self.peek().text == "||":
            self.take()
            terms.append(self.and_expr())
        return terms[0] if len(terms) == 1 else Or(tuple(terms))

    def and_expr(self) -> Selector:
        terms = [self.unary()]
        while self.peek().text == "&&":
            self.take()
            terms.append(self.unary())
        return terms[0] if len(terms) == 1 else And(tuple(terms))

    def unary(self) -> Selector:
        if self.peek().kind == "op" and self.peek().text == "!":
            self.take()
            return Not(self.unary())
        return self.primary()

    def primary(self) -> Selector:
        token = self.take()
        if token.kind == "op" and token.text == "(":
            expr = self.or_expr()
            self.expect(")")
            return expr
        if token.kind != "word":
            raise self.error(token, "expected a label key, has(), all() or '('")
        if token.text in ("all", "has") and self.peek().text == "(":
            self.take()
            if token.text == "all":
                self.expect(")")
                return ALL
            key = self.key()
            self.expect(")")
            return Has(key)
        return self.comparison(token)

    def key(self) -> str:
        token = self.take()
        if token.kind != "word":
            raise self.error(token, "expected a label key")
        return token.text

    def comparison(self, key: _Token) -> Selector:
        op = self.take()
        if op.text == "==":
            return Equals(key.text, self.string())
        if op.text == "!=":
            return NotEquals(key.text, self.string())
        if op.kind == "word" and op.text == "in":
            return In(key.text, self.string_set())
        if op.kind == "word" and op.text == "not":
            self.expect("in")
            return NotIn(key.text, self.string_set())
        raise self.error(op, f"expected ==, !=, in or not in after {key.text!r}")

    def string(self) -> str:
        token = self.take()
        if token.kind != "str":
            raise self.error(token, "expected a quoted string")
        return token.text[1:-1]

    def string_set(self) -> frozenset[str]:
        self.expect("{")
        values: list[str] = []
        if self.peek().text != "}":
            values.append(self.string())
            while self.peek().text == ",":
                self.take()
                values.append(self.string())
        self.expect("}")
        return frozenset(values)


def parse_selector(text: str) -> Selector:
    """Parse ``text``; raises :class:`SelectorError`. An empty selector is an error here:
    callers decide what "not set" means for their field."""
    if not isinstance(text, str):
        raise SelectorError("must be a string")
    if not text.strip():
        raise SelectorError("is empty")
    return _Parser(text).parse()
