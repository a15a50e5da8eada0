"""Checks for the first two lessons: counting characters, a character vocabulary, UTF-8.

* `count_chars` (00_setup, the warm-up): `count_chars(text) -> dict[str, int]` (a Counter or
  defaultdict is a dict too, and the lesson's later cell works with either).
* `build_char_vocab` (01): `build_char_vocab(text) -> tuple[dict[str, int], list[str]]`, the
  sorted distinct characters; `itos` may also be a `str` of them (every later cell of lesson
  01 only joins, indexes and measures it), never a dict (`"".join(itos)` would join its keys).
* `char_encode_decode` (01): `char_encode(text, stoi) -> list[int]`, `char_decode(ids, itos) -> str`;
  a character missing from the vocabulary must raise ValueError naming it.
* `utf8_encode_decode` (01): `utf8_encode(text) -> list[int]` (byte values),
  `utf8_decode(ids) -> str`; bytes that are not valid UTF-8 must raise UnicodeDecodeError.

Every return value must have exactly the type the exercise's docstring states (checked with
`expect_contract` before any value is compared), and no input list or dict may be changed.

The references are Python's own `collections.Counter`, `sorted(set(...))` and
`str.encode("utf-8")`. Hidden cases mix the corpus's ASCII with whitespace, accents,
dashes, CJK, emoji and combining characters, because that is where the typical mistakes
(counting words, unsorted vocabularies, `ord()` for bytes, Latin-1) show up.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from course.checks._core import (
    CheckFailed,
    NotAttempted,
    call,
    exercise,
    expect_contract,
    expect_equal,
    show,
)

__all__ = [
    "check_build_char_vocab",
    "check_char_encode_decode",
    "check_count_chars",
    "check_utf8_encode_decode",
]

# Hand-picked texts: corpus-like ASCII, whitespace of every kind, then 2-, 3- and 4-byte
# characters in UTF-8 (é, —, 東, 🎭), a combining accent (e + U+0301 looks like é) and an
# emoji built from several code points.
_ROMEO = "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun."
_EDGE_TEXTS = [
    "",
    "a",
    "aab",
    "to be, or not to be",
    "  \t\n\n",
    "café",
    "—",
    "東京",
    "🎭",
    "e\u0301",
    _ROMEO,
    "Être ou ne pas être — voilà la question.",
    "naïve façade",
    "生きるべきか、死ぬべきか",
    "🎭 All the world's a stage 🌍",
    "👩\u200d👩\u200d👧 \u00a0 \u0080 \x7f \U0010ffff",
]
_POOLS = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ,.;:!?'-\n",
    "éèçñüßøÉ\u00a0\u0301",
    "—–…€東京生死問題",
    "🎭🌍👑🗡\ufe0f",
)


def _random_texts(n: int, seed: int) -> list[str]:
    """`n` seeded random strings of 0..40 characters drawn mostly from ASCII."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        length = rng.randint(0, 40)
        weights = (8, 2, 1, 1)
        texts.append("".join(rng.choice(rng.choices(_POOLS, weights)[0]) for _ in range(length)))
    return texts


def _texts(seed: int) -> list[str]:
    return _EDGE_TEXTS + _random_texts(20, seed)


def _desc(text: str) -> str:
    return f"text={show(text)}"


def _whitespace_missing(expected_keys: Sequence[str], got_keys: Any) -> bool:
    missing = [c for c in expected_keys if c not in got_keys]
    return bool(missing) and all(c.isspace() for c in missing)


# ------------------------------------------------------------------- 00: count_chars

@exercise("count_chars", hints=(
    "Visit every character of text one by one (a for loop over a str yields its characters) "
    "and keep a dict from character to count.",
    "For each character, read its current count with a default of 0 for a character not seen "
    "yet (dict.get takes a default), add 1 and store it back; return the dict at the end.",
))
def check_count_chars(count_chars: Callable[[str], dict[str, int]]) -> None:
    """`count_chars(text)` must equal `dict(Counter(text))` on every hidden text, as a dict
    (or Counter / defaultdict) of str -> int."""
    name = "count_chars"
    for text in _texts(seed=0):
        desc = _desc(text)
        got = call(name, count_chars, text, inputs_desc=desc)
        # A Counter or defaultdict is a dict to every later cell; anything else is not.
        expect_contract(name, desc, dict | Counter | defaultdict, got,
                        hint="return a dict mapping each character to how many times it occurs, "
                             "e.g. {'a': 2, 'b': 1}")
        bad_values = [v for v in got.values() if type(v) is not int]
        if bad_values:
            hint = ("return counts (whole numbers), not frequencies" if isinstance(bad_values[0], float)
                    else "each value must be an int: how many times that character occurs")
            raise CheckFailed(name, f"on input {desc} — the value {show(bad_values[0])} is "
                                    f"{type(bad_values[0]).__name__}, not int", hint)
        got = dict(got)
        expect_contract(name, desc, dict[str, int], got,
                        hint="the keys are the characters (str), the values their counts (int)")
        expected = dict(Counter(text))
        if got == expected:
            continue
        expect_equal(name, desc, expected, got, hint=_count_hint(text, expected, got))


def _count_hint(text: str, expected: dict[str, int], got: dict[Any, Any]) -> str:
    keys = list(got)
    if any(not isinstance(k, str) or len(k) != 1 for k in keys):
        return ("the keys must be single characters; count characters, not words: "
                "`for ch in text` visits every character")
    if _whitespace_missing(list(expected), got):
        return "spaces, tabs and newlines are characters too: count them"
    if set(got) == {c.lower() for c in expected} and set(got) != set(expected):
        return "keep the case: 'A' and 'a' are different characters"
    if set(got) == set(expected) and all(v == 1 for v in got.values()):
        return "count every occurrence, not only whether a character appears"
    if set(got) == set(expected) and all(got[c] == expected[c] - 1 for c in expected):
        return "each count is one short: a character seen once has count 1"
    return "the count of a character is the number of times it occurs in text, whitespace included"


# ----------------------------------------------------------------- 01: build_char_vocab

_ITOS_DICT_HINT = ("itos must be the list of characters in id order, so that itos[i] is the "
                   "character with id i; a dict {id: char} breaks the next cell, whose "
                   "''.join(itos) iterates over the dict's keys (the int ids), not its characters")


@exercise("build_char_vocab", hints=(
    "A set keeps each distinct character of text once; sorted() turns any collection of "
    "characters into a sorted list. That list is itos.",
    "Number the sorted characters 0, 1, 2, ...: enumerate yields (position, character) pairs, "
    "and stoi maps each character to its position. Return the two as a tuple, stoi first.",
))
def check_build_char_vocab(build_char_vocab: Callable[[str], tuple[dict[str, int], list[str]]]) -> None:
    """`build_char_vocab(text)` must return the tuple `(stoi, itos)` with
    `itos == sorted(set(text))` (a list; a str of the same characters also works in every
    later cell) and `stoi[itos[i]] == i`."""
    name = "build_char_vocab"
    for text in _texts(seed=1):
        desc = _desc(text)
        got = call(name, build_char_vocab, text, inputs_desc=desc)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            extra = "" if got is not None else " (did the function forget to `return`?)"
            raise CheckFailed(name, f"on input {desc} — expected a pair (stoi, itos), got "
                                    f"{show(got)}{extra}",
                              hint="return both maps, stoi first and itos second, as a tuple")
        stoi, itos = got
        if isinstance(stoi, (list, tuple, str)) and isinstance(itos, Mapping):
            raise CheckFailed(name, f"on input {desc} — the first value is {type(stoi).__name__} "
                                    f"and the second a dict: (itos, stoi) instead of (stoi, itos)",
                              hint="return stoi (char -> id) first and itos (id -> char) second")
        if isinstance(itos, Mapping):
            raise CheckFailed(name, f"on input {desc} (itos) — expected list[str], got a dict: "
                                    f"{show(itos)}", hint=_ITOS_DICT_HINT)
        expect_contract(name, desc, tuple[dict[str, int], list[str] | str], got,
                        hint="return a tuple (stoi, itos): stoi a dict {char: id}, itos the list "
                             "of characters in id order")
        itos = list(itos)
        expected_itos = sorted(set(text))
        if itos != expected_itos:
            expect_equal(name, f"{desc} (itos)", expected_itos, itos,
                         hint=_itos_hint(text, expected_itos, itos))
        expected_stoi = {c: i for i, c in enumerate(expected_itos)}
        if stoi != expected_stoi:
            expect_equal(name, f"{desc} (stoi)", expected_stoi, stoi,
                         hint=_stoi_hint(expected_stoi, stoi))


def _itos_hint(text: str, expected: list[str], got: list[str]) -> str:
    if any(len(c) != 1 for c in got):
        return "itos holds single characters; split the text into characters, not words"
    if len(got) != len(set(got)):
        return "list each character once: a set drops the repeats"
    if sorted(got) == expected:
        if got == list(dict.fromkeys(text)):
            return ("these are the characters in order of first appearance; sort them, so that "
                    "the ids do not depend on where a character first occurs")
        return "sort the characters (Python sorts str by code point)"
    if _whitespace_missing(expected, got):
        return "spaces, tabs and newlines are characters too: keep them in the vocabulary"
    return "itos must hold every distinct character of text exactly once, in sorted order"


def _stoi_hint(expected: dict[str, int], got: dict[str, int]) -> str:
    if set(got) == set(expected) and all(got[c] == i + 1 for c, i in expected.items()):
        return "ids start at 0: the first character of itos has id 0"
    if set(got) == set(expected):
        return "stoi must undo itos: stoi[itos[i]] == i for every i"
    return "stoi maps every character of itos, and only those, to its position in itos"


# --------------------------------------------------------------- 01: char_encode_decode


@exercise("char_encode_decode", hints=(
    "char_encode: one id per character, looked up in stoi; test whether the character is in "
    "stoi first, so that an unknown one can be reported by name. char_decode does the inverse "
    "with itos, one character per id.",
    "char_decode must return one str: collect the characters, then glue them together with an "
    "empty separator (str.join). An unknown character in char_encode: raise ValueError with a "
    "message that contains the character (an f-string with {ch!r} shows it quoted).",
))
def check_char_encode_decode(char_encode: Callable[[str, dict[str, int]], list[int]],
                             char_decode: Callable[[list[int], list[str]], str]) -> int:
    """Both functions against the reference on hidden texts (vocabulary = the text's own
    sorted characters), the round trip, and a ValueError naming an unknown character."""
    name = "char_encode_decode"
    cases = 0
    for text in _texts(seed=2):
        itos = sorted(set(text))
        stoi = {c: i for i, c in enumerate(itos)}
        for sample in dict.fromkeys([text, text[::-1], text[: len(text) // 2]]):
            cases += 1
            ids = [stoi[c] for c in sample]
            desc = f"text={show(sample)}, stoi={show(stoi)}"
            got_ids = call(name, char_encode, sample, stoi, inputs_desc=f"char_encode({desc})")
            _expect_int_list(name, f"char_encode({desc})", got_ids,
                             hint="return a list with one id (an int) per character")
            if got_ids != ids:
                expect_equal(name, f"char_encode({desc})", ids, got_ids,
                             hint=_char_encode_hint(sample, ids, got_ids))
            ddesc = f"ids={show(ids)}, itos={show(itos)}"
            got_text = call(name, char_decode, ids, itos, inputs_desc=f"char_decode({ddesc})")
            if type(got_text) is list and "".join(map(str, got_text)) == sample:
                raise CheckFailed(name, f"on input char_decode({ddesc}) — got the list "
                                        f"{show(got_text)}",
                                  hint="return one str: join the characters together")
            expect_contract(name, f"char_decode({ddesc})", str, got_text,
                            hint="return the decoded text as a str")
            if got_text != sample:
                hint = ("join with an empty separator: ' '.join(...) puts a space between "
                        "characters" if got_text == " ".join(sample)
                        else "itos[i] is the character with id i; decode maps each id back")
                expect_equal(name, f"char_decode({ddesc})", sample, got_text, hint=hint)
    cases += _check_unknown_character(name, char_encode)
    return cases


def _expect_int_list(name: str, desc: str, got: Any, hint: str) -> None:
    if isinstance(got, str):
        raise CheckFailed(name, f"on input {desc} — got the string {show(got)}",
                          hint="return the list of ids, not a string")
    expect_contract(name, desc, list[int], got, hint=hint)


def _char_encode_hint(text: str, expected: list[int], got: list[int]) -> str:
    if len(got) < len(expected):
        return "one id per character (spaces and newlines included), not per word"
    if len(got) == len(expected) and all(g == e + 1 for g, e in zip(got, expected, strict=True)):
        return "use the ids stoi gives (they start at 0); do not add 1"
    return "the id of character c is stoi[c]"


def _check_unknown_character(name: str, char_encode: Callable[..., Any]) -> int:
    """A character missing from stoi must raise ValueError whose message names it (and
    stoi must come back unchanged: adding the character is not an answer)."""
    stoi = {c: i for i, c in enumerate(sorted(set("to be or not")))}
    unknown_cases = [("to be, or not", ","), ("not to bé", "é"), ("to be 🎭", "🎭")]
    for text, unknown in unknown_cases:
        desc = f"char_encode(text={show(text)}, stoi={show(stoi)})"
        want = f"a ValueError whose message names the unknown character {unknown!r}"
        given = dict(stoi)
        got: Any = None
        error: Exception | None = None
        try:
            got = char_encode(text, given)
        except NotImplementedError:
            raise NotAttempted(name) from None
        except Exception as e:
            error = e
        if given != stoi:
            raise CheckFailed(name, f"on input {desc} your function changed its argument 2 (stoi) "
                                    f"in place: it is {show(given)} after the call",
                              hint="do not add unknown characters to stoi (or change it in any "
                                   "way): the vocabulary is fixed once built, and an unknown "
                                   "character must raise a ValueError instead")
        if isinstance(error, ValueError):
            if unknown not in str(error):
                raise CheckFailed(name, f"on input {desc} — your ValueError says {str(error)!r}, "
                                        f"which does not name the unknown character {unknown!r}",
                                  hint="put the character itself in the message, e.g. "
                                       "\"character '$' is not in the vocabulary\"")
            continue
        if isinstance(error, KeyError):
            raise CheckFailed(name, f"on input {desc} — your code raised KeyError: {error}; "
                                    f"expected {want}",
                              hint="catch the KeyError (or test whether the character is in "
                                   "stoi first) and raise a ValueError that says which character "
                                   "is unknown")
        if error is not None:
            raise CheckFailed(name, f"on input {desc} — your code raised "
                                    f"{type(error).__name__}: {error}; expected {want}",
                              hint="test whether each character is in stoi before looking it up")
        how = ("skipped it" if isinstance(got, list) and len(got) < len(text)
               else "gave it an id anyway")
        raise CheckFailed(name, f"on input {desc} — returned {show(got)} instead of raising "
                                f"{want}",
                          hint=f"your encoder {how}: an unknown character must stop encoding, "
                               "otherwise decode(encode(text)) silently differs from text")
    return len(unknown_cases)


# --------------------------------------------------------------- 01: utf8_encode_decode

_ORD_HINT = ("ord(ch) is the character's code point, not its UTF-8 bytes: the two agree only "
             "on ASCII ('é' is code point 233 but the two UTF-8 bytes 195, 169), and Latin-1 "
             "covers only code points below 256. Encode the text as UTF-8 (str.encode) and list "
             "the byte values")


@exercise("utf8_encode_decode", hints=(
    "Text to bytes is the str.encode method, given the encoding's name; bytes to text is the "
    "bytes.decode method. A bytes object behaves like a sequence of ints in 0..255.",
    "utf8_encode: encode the whole text as UTF-8 and convert the bytes object to a list. "
    "utf8_decode: rebuild one bytes object from the whole list (the bytes constructor accepts "
    "a list of ints), then decode it as UTF-8 with no errors= argument (strict).",
))
def check_utf8_encode_decode(utf8_encode: Callable[[str], list[int]],
                             utf8_decode: Callable[[list[int]], str]) -> int:
    """`utf8_encode(text) == list(text.encode('utf-8'))` and `utf8_decode` inverts it, on
    texts with 1- to 4-byte characters; `utf8_decode` of broken bytes raises
    UnicodeDecodeError."""
    name = "utf8_encode_decode"
    cases = 0
    for text in _texts(seed=3):
        cases += 1
        expected = list(text.encode("utf-8"))
        desc = f"utf8_encode({show(text)})"
        try:
            got = call(name, utf8_encode, text, inputs_desc=desc)
        except CheckFailed as e:
            if "UnicodeEncodeError" in e.detail:
                raise CheckFailed(name, e.detail, hint=_ORD_HINT) from None
            raise
        if isinstance(got, (bytes, bytearray)):
            raise CheckFailed(name, f"on input {desc} — got {type(got).__name__} {show(got)}",
                              hint="return a list of ints, not a bytes object: convert the "
                                   "bytes to a list")
        _expect_int_list(name, desc, got, hint="return a list of ints, one per byte")
        if got != expected:
            hint = (_ORD_HINT if got == [ord(c) for c in text] else
                    "encode the whole text as UTF-8 and list its byte values")
            expect_equal(name, desc, expected, got, hint=hint)

        ddesc = f"utf8_decode({show(expected)})"
        try:
            back = call(name, utf8_decode, expected, inputs_desc=ddesc)
        except CheckFailed as e:
            if "UnicodeDecodeError" in e.detail:
                raise CheckFailed(name, e.detail, hint="decode all the bytes together: one byte "
                                  "of a multi-byte character is not valid UTF-8 on its own, so "
                                  "build one bytes object from the whole list and decode that"
                                  ) from None
            raise
        if isinstance(back, (bytes, bytearray)):
            raise CheckFailed(name, f"on input {ddesc} — got {type(back).__name__} {show(back)}",
                              hint="turn the bytes into text: a bytes object has a .decode "
                                   "method that takes the encoding's name")
        expect_contract(name, ddesc, str, back, hint="return the decoded text as a str")
        if back != text:
            if back == "".join(chr(b) for b in expected):
                hint = ("chr() of each byte (or Latin-1) reads every byte as its own character; "
                        "'é' is the two bytes 195, 169, which must be decoded together as UTF-8")
            elif back == str(bytes(expected)):
                hint = ("str(bytes) gives the bytes' repr (b'...'), not the text; decode the "
                        "bytes as UTF-8 instead")
            else:
                hint = "rebuild the bytes from the list of values and decode them as UTF-8"
            expect_equal(name, ddesc, text, back, hint=hint)
    return cases + _check_strict_decode(name, utf8_decode)


def _check_strict_decode(name: str, utf8_decode: Callable[[list[int]], str]) -> int:
    """Bytes that are not valid UTF-8 must raise UnicodeDecodeError (the default
    errors='strict'); the lesson's next cell relies on it to show the error."""
    broken = list("Être".encode())[1:]  # starts with a continuation byte
    desc = f"utf8_decode({show(broken)})"
    try:
        got = utf8_decode(broken)
    except NotImplementedError:
        raise NotAttempted(name) from None
    except UnicodeDecodeError:
        return 1
    except Exception as e:
        raise CheckFailed(name, f"on input {desc} (not valid UTF-8) — your code raised "
                                f"{type(e).__name__}: {e}; expected UnicodeDecodeError",
                          hint="decode the bytes with the bytes.decode method, which raises "
                               "UnicodeDecodeError on broken bytes") from None
    raise CheckFailed(name, f"on input {desc} (not valid UTF-8) — returned {show(got)} instead of "
                            f"raising UnicodeDecodeError",
                      hint="decode strictly here (the default errors='strict'), so broken bytes "
                           "raise UnicodeDecodeError; the next cell shows why tokenizers use "
                           "errors='replace'")
