"""Checks for the first two lessons: counting characters, a character vocabulary, UTF-8.

* `count_chars` (00_setup, the warm-up): `count_chars(text) -> {char: count}`.
* `build_char_vocab` (01): `build_char_vocab(text) -> (stoi, itos)`, sorted distinct characters.
* `char_encode_decode` (01): `char_encode(text, stoi) -> ids`, `char_decode(ids, itos) -> text`;
  a character missing from the vocabulary must raise ValueError naming it.
* `utf8_encode_decode` (01): `utf8_encode(text) -> bytes as ints`, `utf8_decode(ids) -> text`;
  bytes that are not valid UTF-8 must raise UnicodeDecodeError (strict decoding).

The references are Python's own `collections.Counter`, `sorted(set(...))` and
`str.encode("utf-8")`. Hidden cases mix the corpus's ASCII with whitespace, accents,
dashes, CJK, emoji and combining characters, because that is where the typical mistakes
(counting words, unsorted vocabularies, `ord()` for bytes, Latin-1) show up.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from course.checks._core import (
    CheckFailed,
    NotAttempted,
    call,
    exercise,
    expect_equal,
    expect_type,
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


@exercise("count_chars")
def check_count_chars(count_chars: Callable[[str], dict[str, int]]) -> None:
    """`count_chars(text)` must equal `dict(Counter(text))` on every hidden text."""
    name = "count_chars"
    for text in _texts(seed=0):
        desc = _desc(text)
        got = call(name, count_chars, text, inputs_desc=desc)
        expect_type(name, desc, dict, got, hint="return a dict mapping each character to how "
                                                "many times it occurs, e.g. {'a': 2, 'b': 1}")
        expected = dict(Counter(text))
        got = dict(got)
        if got == expected:
            continue
        bad_values = [v for v in got.values() if isinstance(v, bool) or not isinstance(v, int)]
        if bad_values:
            hint = ("return counts (whole numbers), not frequencies" if isinstance(bad_values[0], float)
                    else "each value must be an int: how many times that character occurs")
            raise CheckFailed(name, f"on input {desc} — the value {show(bad_values[0])} is "
                                    f"{type(bad_values[0]).__name__}, not int", hint)
        expect_equal(name, desc, expected, got, hint=_count_hint(text, expected, got))


def _count_hint(text: str, expected: dict[str, int], got: dict[str, Any]) -> str:
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
    return "the count of a character c is the number of times it occurs in text (text.count(c))"


# ----------------------------------------------------------------- 01: build_char_vocab


@exercise("build_char_vocab")
def check_build_char_vocab(build_char_vocab: Callable[[str], tuple[dict[str, int], list[str]]]) -> None:
    """`build_char_vocab(text)` must return `(stoi, itos)` with `itos = sorted(set(text))`
    and `stoi[itos[i]] == i`; `itos` may also be a dict `{id: char}`."""
    name = "build_char_vocab"
    for text in _texts(seed=1):
        desc = _desc(text)
        got = call(name, build_char_vocab, text, inputs_desc=desc)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            extra = "" if got is not None else " (did the function forget to `return`?)"
            raise CheckFailed(name, f"on input {desc} — expected a pair (stoi, itos), got "
                                    f"{show(got)}{extra}", hint="end with `return stoi, itos`")
        stoi, itos = got
        if isinstance(stoi, (list, tuple, str)) and isinstance(itos, Mapping):
            raise CheckFailed(name, f"on input {desc} — the first value is {type(stoi).__name__} "
                                    f"and the second a dict: (itos, stoi) instead of (stoi, itos)",
                              hint="return stoi (char -> id) first and itos (id -> char) second")
        expect_type(name, desc, dict, stoi, hint="stoi maps each character to its id: a dict "
                                                 "such as {'a': 0, 'b': 1}")
        itos = _itos_as_list(name, desc, itos)
        expected_itos = sorted(set(text))
        if itos != expected_itos:
            expect_equal(name, f"{desc} (itos)", expected_itos, itos,
                         hint=_itos_hint(text, expected_itos, itos))
        expected_stoi = {c: i for i, c in enumerate(expected_itos)}
        if stoi != expected_stoi:
            expect_equal(name, f"{desc} (stoi)", expected_stoi, stoi,
                         hint=_stoi_hint(expected_stoi, stoi))


def _itos_as_list(name: str, desc: str, itos: Any) -> list[Any]:
    """`itos` as a list: a list or tuple as is, a dict {0: c0, 1: c1, ...} in id order."""
    if isinstance(itos, Mapping):
        if set(itos) != set(range(len(itos))):
            raise CheckFailed(name, f"on input {desc} — itos is a dict whose keys are not the ids "
                                    f"0..{len(itos) - 1}: {show(itos)}",
                              hint="itos maps each id (0, 1, 2, ...) to its character")
        return [itos[i] for i in range(len(itos))]
    if isinstance(itos, str):
        raise CheckFailed(name, f"on input {desc} — itos is the string {show(itos)}",
                          hint="make itos a list of characters: sorted(set(text)) is one")
    expect_type(name, desc, (list, tuple), itos,
                hint="itos is the list of characters in id order: itos[i] is the character with id i")
    return list(itos)


def _itos_hint(text: str, expected: list[str], got: list[Any]) -> str:
    if any(not isinstance(c, str) or len(c) != 1 for c in got):
        return "itos holds single characters; split the text into characters, not words"
    if len(got) != len(set(got)):
        return "list each character once: set(text) drops the repeats"
    if sorted(got) == expected:
        if got == list(dict.fromkeys(text)):
            return ("these are the characters in order of first appearance; sort them "
                    "(sorted(set(text))) so ids do not depend on where a character first occurs")
        return "sort the characters: sorted(set(text)) orders them by code point"
    if _whitespace_missing(expected, got):
        return "spaces, tabs and newlines are characters too: keep them in the vocabulary"
    return "itos must be sorted(set(text)): every distinct character once, in sorted order"


def _stoi_hint(expected: dict[str, int], got: dict[Any, Any]) -> str:
    if set(got) == set(expected) and all(got[c] == i + 1 for c, i in expected.items()):
        return "ids start at 0: the first character of itos has id 0"
    if set(got) == set(expected):
        return "stoi must undo itos: stoi[itos[i]] == i for every i"
    return "stoi maps every character of itos to its position: {c: i for i, c in enumerate(itos)}"


# --------------------------------------------------------------- 01: char_encode_decode


@exercise("char_encode_decode")
def check_char_encode_decode(char_encode: Callable[[str, dict[str, int]], list[int]],
                             char_decode: Callable[[Sequence[int], list[str]], str]) -> int:
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
            got_ids = call(name, char_encode, sample, stoi, inputs_desc=desc)
            _expect_int_list(name, f"char_encode({desc})", got_ids,
                             hint="return a list with one id (an int) per character")
            if got_ids != ids:
                expect_equal(name, f"char_encode({desc})", ids, list(got_ids),
                             hint=_char_encode_hint(sample, ids, list(got_ids)))
            ddesc = f"ids={show(ids)}, itos={show(itos)}"
            got_text = call(name, char_decode, ids, itos, inputs_desc=ddesc)
            if isinstance(got_text, list) and "".join(map(str, got_text)) == sample:
                raise CheckFailed(name, f"on input char_decode({ddesc}) — got the list "
                                        f"{show(got_text)}", hint="join the characters into one "
                                                                  "string: ''.join(...)")
            expect_type(name, f"char_decode({ddesc})", str, got_text,
                        hint="return the decoded text as a str")
            if got_text != sample:
                hint = ("join with the empty string ''.join(...): ' '.join(...) puts a space "
                        "between characters" if got_text == " ".join(sample)
                        else "itos[i] is the character with id i; decode maps each id back")
                expect_equal(name, f"char_decode({ddesc})", sample, got_text, hint=hint)
    cases += _check_unknown_character(name, char_encode)
    return cases


def _expect_int_list(name: str, desc: str, got: Any, hint: str) -> None:
    if isinstance(got, str):
        raise CheckFailed(name, f"on input {desc} — got the string {show(got)}",
                          hint="return the list of ids, not a string")
    expect_type(name, desc, list, got, hint=hint)
    bad = [x for x in got if isinstance(x, bool) or not isinstance(x, int)]
    if bad:
        raise CheckFailed(name, f"on input {desc} — the list holds {show(bad[0])} "
                                f"({type(bad[0]).__name__}), not only ints", hint=hint)


def _char_encode_hint(text: str, expected: list[int], got: list[int]) -> str:
    if len(got) < len(expected):
        return "one id per character (spaces and newlines included), not per word"
    if len(got) == len(expected) and all(g == e + 1 for g, e in zip(got, expected, strict=True)):
        return "use the ids stoi gives (they start at 0); do not add 1"
    return "the id of character c is stoi[c]"


def _check_unknown_character(name: str, char_encode: Callable[..., Any]) -> int:
    """A character missing from stoi must raise ValueError whose message names it."""
    stoi = {c: i for i, c in enumerate(sorted(set("to be or not")))}
    unknown_cases = [("to be, or not", ","), ("not to bé", "é"), ("to be 🎭", "🎭")]
    for text, unknown in unknown_cases:
        desc = f"char_encode(text={show(text)}, stoi={show(stoi)})"
        want = (f"a ValueError whose message names the unknown character {unknown!r}, e.g. "
                f"ValueError(f'character {{ch!r}} is not in the vocabulary')")
        try:
            got = char_encode(text, stoi)
        except NotImplementedError:
            raise NotAttempted(name) from None
        except ValueError as e:
            if unknown not in str(e):
                raise CheckFailed(name, f"on input {desc} — your ValueError says {str(e)!r}, which "
                                        f"does not name the unknown character {unknown!r}",
                                  hint=f"put the character in the message: {want}") from None
            continue
        except KeyError as e:
            raise CheckFailed(name, f"on input {desc} — your code raised KeyError: {e}; "
                                    f"expected {want}",
                              hint="catch the KeyError (or test `ch in stoi`) and raise a "
                                   "ValueError that says which character is unknown") from None
        except Exception as e:
            raise CheckFailed(name, f"on input {desc} — your code raised {type(e).__name__}: {e}; "
                                    f"expected {want}",
                              hint="test `ch in stoi` before looking a character up") from None
        how = ("skipped it" if isinstance(got, list) and len(got) < len(text)
               else "gave it an id anyway")
        raise CheckFailed(name, f"on input {desc} — returned {show(got)} instead of raising "
                                f"{want}",
                          hint=f"your encoder {how}: an unknown character must stop encoding, "
                               "otherwise decode(encode(text)) silently differs from text")
    return len(unknown_cases)


# --------------------------------------------------------------- 01: utf8_encode_decode

_ORD_HINT = ("ord(ch) is the code point, which equals the UTF-8 byte only for ASCII (and "
             "Latin-1 covers only code points < 256); UTF-8 writes any other character as 2 to 4 "
             "bytes: list(text.encode('utf-8'))")


@exercise("utf8_encode_decode")
def check_utf8_encode_decode(utf8_encode: Callable[[str], list[int]],
                             utf8_decode: Callable[[Sequence[int]], str]) -> int:
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
                              hint="return a list of ints: list(text.encode('utf-8'))")
        _expect_int_list(name, desc, got, hint="return a list of ints, one per byte")
        if got != expected:
            hint = (_ORD_HINT if got == [ord(c) for c in text] else
                    "encode the whole text with text.encode('utf-8') and list its bytes")
            expect_equal(name, desc, expected, got, hint=hint)

        ddesc = f"utf8_decode({show(expected)})"
        try:
            back = call(name, utf8_decode, expected, inputs_desc=ddesc)
        except CheckFailed as e:
            if "UnicodeDecodeError" in e.detail:
                raise CheckFailed(name, e.detail, hint="decode all the bytes together, "
                                  "bytes(ids).decode('utf-8'): one byte of a multi-byte "
                                  "character is not valid UTF-8 on its own") from None
            raise
        if isinstance(back, (bytes, bytearray)):
            raise CheckFailed(name, f"on input {ddesc} — got {type(back).__name__} {show(back)}",
                              hint="turn the bytes into text: bytes(ids).decode('utf-8')")
        expect_type(name, ddesc, str, back, hint="return the decoded text as a str")
        if back != text:
            if back == "".join(chr(b) for b in expected):
                hint = ("chr() of each byte (or .decode('latin-1')) reads every byte as its own "
                        "character; 'é' is the two bytes 195, 169 and must be decoded together: "
                        "bytes(ids).decode('utf-8')")
            elif back == str(bytes(expected)):
                hint = "str(bytes) gives the bytes' repr; use bytes(ids).decode('utf-8')"
            else:
                hint = "bytes(ids).decode('utf-8') turns the list of byte values back into text"
            expect_equal(name, ddesc, text, back, hint=hint)
    return cases + _check_strict_decode(name, utf8_decode)


def _check_strict_decode(name: str, utf8_decode: Callable[[Sequence[int]], str]) -> int:
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
                          hint="decode with bytes(ids).decode('utf-8'), which raises "
                               "UnicodeDecodeError on broken bytes") from None
    raise CheckFailed(name, f"on input {desc} (not valid UTF-8) — returned {show(got)} instead of "
                            f"raising UnicodeDecodeError",
                      hint="decode strictly here (the default errors='strict'), so broken bytes "
                           "raise UnicodeDecodeError; the next cell shows why tokenizers use "
                           "errors='replace'")
