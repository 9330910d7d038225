"""Label selectors: each supported form, precedence, canonical text, and refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podbgp.cluster.selector import ALL, SelectorError, parse_selector

RR = {"route-reflector": "true", "zone": "a"}
PLAIN = {"zone": "b"}
NONE: dict[str, str] = {}


@pytest.mark.parametrize(
    ("text", "rr", "plain", "none"),
    [
        ("all()", True, True, True),
        ("route-reflector == 'true'", True, False, False),
        ('route-reflector == "true"', True, False, False),
        ("zone != 'a'", False, True, True),  # != also matches an absent label
        ("has(route-reflector)", True, False, False),
        ("!has(route-reflector)", False, True, True),
        ("zone in {'a', 'c'}", True, False, False),
        ("zone not in {'a'}", False, True, True),
        ("has(zone) && zone != 'a'", False, True, False),
        ("zone == 'a' || zone == 'b'", True, True, False),
        ("!(zone == 'a')", False, True, True),
        ("zone in {}", False, False, False),
    ],
)
def test_forms(text: str, rr: bool, plain: bool, none: bool) -> None:
    sel = parse_selector(text)
    assert (sel.matches(RR), sel.matches(PLAIN), sel.matches(NONE)) == (rr, plain, none)


def test_and_binds_tighter_than_or() -> None:
    sel = parse_selector("a == '1' || b == '1' && c == '1'")
    assert sel.matches({"a": "1"})
    assert not sel.matches({"b": "1"})
    assert sel.matches({"b": "1", "c": "1"})
    grouped = parse_selector("(a == '1' || b == '1') && c == '1'")
    assert not grouped.matches({"a": "1"})


def test_prefixed_label_keys() -> None:
    sel = parse_selector("kubernetes.io/hostname == 'node-1'")
    assert sel.matches({"kubernetes.io/hostname": "node-1"})
    assert not sel.matches({"hostname": "node-1"})


def test_all_is_the_shared_constant() -> None:
    assert parse_selector(" all( ) ") == ALL


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is empty"),
        ("zone = 'a'", "unexpected character '='"),
        ("zone == a", "expected a quoted string at column 9, found 'a'"),
        ("zone == 'a' &&", "found end of selector"),
        ("has(zone", "expected ')'"),
        ("zone 'a'", "expected ==, !=, in or not in after 'zone'"),
        ("(zone == 'a'", "expected ')'"),
        ("zone == 'a' zone", "expected && or || or the end"),
        ("zone in 'a'", "expected '{'"),
        ("zone == 'a", "unexpected character"),
    ],
)
def test_refusals_say_what_and_where(text: str, problem: str) -> None:
    with pytest.raises(SelectorError) as err:
        parse_selector(text)
    assert problem in str(err.value)


labels = st.dictionaries(
    st.sampled_from(["a", "b", "zone", "x.io/k"]), st.sampled_from(["1", "2", "true"]), max_size=4
)
atoms = st.one_of(
    st.just("all()"),
    st.builds(lambda k, v: f"{k} == '{v}'", st.sampled_from(["a", "zone"]), st.sampled_from("12")),
    st.builds(lambda k, v: f"{k} != '{v}'", st.sampled_from(["a", "b"]), st.sampled_from("12")),
    st.builds(lambda k: f"has({k})", st.sampled_from(["a", "x.io/k"])),
    st.builds(lambda k: f"{k} in {{'1', 'true'}}", st.sampled_from(["b", "zone"])),
)
exprs = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a}) && ({b})", inner, inner),
        st.builds(lambda a, b: f"({a}) || ({b})", inner, inner),
        st.builds(lambda a: f"!({a})", inner),
    ),
    max_leaves=8,
)


@given(exprs, labels)
def test_canonical_text_parses_to_the_same_meaning(text: str, lab: dict[str, str]) -> None:
    sel = parse_selector(text)
    again = parse_selector(str(sel))
    assert again.matches(lab) == sel.matches(lab)
    assert str(again) == str(sel)
