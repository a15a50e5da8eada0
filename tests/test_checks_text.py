"""The checks of lessons 00 and 01 (`course.checks.text`): the reference solutions pass,
realistic wrong solutions fail with the hint that fixes them, placeholders are "not attempted"."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from lookalikes import AlwaysEqualDict, AlwaysEqualList, AlwaysEqualStr

from course import checks as check
from course.checks import CheckFailed, NotAttempted
from course.checks import _core as core

# ------------------------------------------------------------------ reference solutions


def count_chars(text):
    counts = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    return counts


def build_char_vocab(text):
    itos = sorted(set(text))
    return {ch: i for i, ch in enumerate(itos)}, itos


def char_encode(text, stoi):
    for ch in text:
        if ch not in stoi:
            raise ValueError(f"character {ch!r} is not in the vocabulary")
    return [stoi[ch] for ch in text]


def char_decode(ids, itos):
    return "".join(itos[i] for i in ids)


def utf8_encode(text):
    return list(text.encode("utf-8"))


def utf8_decode(ids):
    return bytes(ids).decode("utf-8")


def todo(*args):
    raise NotImplementedError("Exercise: write it")


def failure(check_fn, *fns) -> CheckFailed:
    with pytest.raises(CheckFailed) as info:
        check_fn(*fns)
    return info.value


# ---------------------------------------------------------------------------- count_chars


def count_chars_defaultdict(text):
    counts = defaultdict(int)
    for ch in text:
        counts[ch] += 1
    return counts


def test_count_chars_reference_counter_and_defaultdict_pass(capsys):
    check.count_chars(count_chars)
    check.count_chars(Counter)  # a Counter is a dict: accepted
    check.count_chars(count_chars_defaultdict)
    out = capsys.readouterr().out.splitlines()
    assert out == ["✓ count_chars: 36 cases passed"] * 3


def test_count_chars_always_equal_and_wrong_key_types_are_rejected():
    e = failure(check.count_chars, lambda t: AlwaysEqualDict())
    assert "got an AlwaysEqualDict" in e.detail and "return a dict" in e.hint
    e = failure(check.count_chars, lambda t: {ord(c): n for c, n in Counter(t).items()})
    assert "(a key)" in e.detail and "keys are the characters (str)" in e.hint


@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda t: dict(Counter(t.split())), "count characters, not words"),
    (lambda t: dict(Counter(c for c in t if not c.isspace())), "spaces, tabs and newlines"),
    (lambda t: dict(Counter(t.lower())), "keep the case"),
    (lambda t: {c: 1 for c in t}, "count every occurrence"),
    (lambda t: {c: t.count(c) - 1 for c in t}, "one short"),
    (lambda t: {c: t.count(c) / len(t) for c in t}, "not frequencies"),
])
def test_count_chars_wrong_solutions_get_the_matching_hint(wrong, hint):
    e = failure(check.count_chars, wrong)
    assert e.exercise == "count_chars" and hint in e.hint


def test_count_chars_wrong_type_and_missing_return():
    assert "return a dict" in failure(check.count_chars, lambda t: list(Counter(t).items())).hint
    assert "forget to `return`" in str(failure(check.count_chars, lambda t: None))


def test_count_chars_placeholder_is_not_attempted():
    with pytest.raises(NotAttempted):
        check.count_chars(todo)


# ----------------------------------------------------------------------- build_char_vocab


def test_build_char_vocab_reference_and_str_itos_pass(capsys):
    check.build_char_vocab(build_char_vocab)

    def with_str_itos(text):  # works in every later cell: "".join, len, itos[i]
        itos = "".join(sorted(set(text)))
        return {c: i for i, c in enumerate(itos)}, itos

    check.build_char_vocab(with_str_itos)
    assert capsys.readouterr().out == "✓ build_char_vocab: 36 cases passed\n" * 2


def test_build_char_vocab_str_itos_works_in_the_lessons_next_cells():
    stoi, itos = build_char_vocab("to be, or not")
    as_str = "".join(itos)
    ids = char_encode("not to be", stoi)
    assert "".join(as_str) == "".join(itos) and len(as_str) == len(itos)
    assert char_decode(ids, as_str) == char_decode(ids, itos) == "not to be"


def test_build_char_vocab_dict_itos_is_rejected_because_the_next_cell_joins_it():
    def with_dict_itos(text):
        chars = sorted(set(text))
        return {c: i for i, c in enumerate(chars)}, dict(enumerate(chars))

    e = failure(check.build_char_vocab, with_dict_itos)
    assert "expected list[str], got a dict" in e.detail
    assert "itos[i] is the character with id i" in e.hint and "''.join(itos)" in e.hint
    with pytest.raises(TypeError):  # what the lesson's next cell would have done
        "".join(with_dict_itos("ab")[1])


@pytest.mark.parametrize(("wrong", "fragment"), [
    (lambda t: list(build_char_vocab(t)), "expected tuple[dict[str, int], list[str] or str], got a list"),
    (lambda t: (build_char_vocab(t)[0], tuple(build_char_vocab(t)[1])), "got a tuple"),
    (lambda t: (build_char_vocab(t)[0], AlwaysEqualList(build_char_vocab(t)[1])), "AlwaysEqualList"),
    (lambda t: (AlwaysEqualDict(build_char_vocab(t)[0]), build_char_vocab(t)[1]), "AlwaysEqualDict"),
])
def test_build_char_vocab_wrong_containers_are_rejected(wrong, fragment):
    e = failure(check.build_char_vocab, wrong)
    assert fragment in e.detail and "return a tuple (stoi, itos)" in e.hint


def _vocab_from(chars):
    return {c: i for i, c in enumerate(chars)}, chars


@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda t: _vocab_from(list(dict.fromkeys(t))), "order of first appearance"),
    (lambda t: _vocab_from(list(t)), "list each character once"),
    (lambda t: _vocab_from(sorted(set(t.split()))), "not words"),
    (lambda t: _vocab_from(sorted(set(t) - set(" \t\n"))), "spaces, tabs and newlines"),
    (lambda t: ({c: i + 1 for i, c in enumerate(sorted(set(t)))}, sorted(set(t))), "ids start at 0"),
    (lambda t: build_char_vocab(t)[::-1], "(itos, stoi) instead of (stoi, itos)"),
    (lambda t: sorted(set(t)), "stoi first and itos second, as a tuple"),
])
def test_build_char_vocab_wrong_solutions_get_the_matching_hint(wrong, hint):
    e = failure(check.build_char_vocab, wrong)
    assert hint in str(e), str(e)


def test_build_char_vocab_placeholder_is_not_attempted():
    with pytest.raises(NotAttempted):
        check.build_char_vocab(todo)


# --------------------------------------------------------------------- char_encode_decode


def test_char_encode_decode_reference_passes(capsys):
    check.char_encode_decode(char_encode, char_decode)
    assert capsys.readouterr().out.startswith("✓ char_encode_decode: ")


def test_bare_key_error_for_an_unknown_character_is_rejected_with_advice():
    e = failure(check.char_encode_decode, lambda t, stoi: [stoi[c] for c in t], char_decode)
    assert "raised KeyError" in e.detail and "expected a ValueError" in e.detail
    assert "catch the KeyError" in e.hint


@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda t, stoi: [stoi[c] for c in t if c in stoi], "your encoder skipped it"),
    (lambda t, stoi: [stoi.get(c, 0) for c in t], "your encoder gave it an id anyway"),
])
def test_silently_handled_unknown_characters_are_rejected(wrong, hint):
    assert hint in failure(check.char_encode_decode, wrong, char_decode).hint


def test_value_error_must_name_the_character():
    def vague(text, stoi):
        if any(c not in stoi for c in text):
            raise ValueError("unknown character")
        return [stoi[c] for c in text]

    e = failure(check.char_encode_decode, vague, char_decode)
    assert "does not name the unknown character" in e.detail


@pytest.mark.parametrize(("wrong_decode", "hint"), [
    (lambda ids, itos: " ".join(itos[i] for i in ids), "' '.join(...) puts a space"),
    (lambda ids, itos: [itos[i] for i in ids], "join the characters"),
])
def test_char_decode_mistakes_get_the_matching_hint(wrong_decode, hint):
    assert hint in failure(check.char_encode_decode, char_encode, wrong_decode).hint


def test_char_encode_per_word_and_string_output_are_rejected():
    per_word = lambda t, stoi: [stoi[w[0]] for w in t.split()] if all(c in stoi for c in t) else char_encode(t, stoi)
    assert "not per word" in failure(check.char_encode_decode, per_word, char_decode).hint
    as_str = lambda t, stoi: "".join(str(i) for i in char_encode(t, stoi))
    assert "not a string" in failure(check.char_encode_decode, as_str, char_decode).hint


def test_char_encode_decode_wrong_containers_are_rejected():
    e = failure(check.char_encode_decode, lambda t, stoi: tuple(char_encode(t, stoi)), char_decode)
    assert "expected list[int], got a tuple" in e.detail
    e = failure(check.char_encode_decode, lambda t, stoi: AlwaysEqualList(), char_decode)
    assert "AlwaysEqualList" in e.detail
    e = failure(check.char_encode_decode, char_encode, lambda ids, itos: AlwaysEqualStr("x"))
    assert "expected str, got an AlwaysEqualStr" in e.detail


def test_char_decode_that_consumes_its_ids_is_rejected():
    def decode_popping(ids, itos):
        out = []
        while ids:
            out.append(itos[ids.pop(0)])
        return "".join(out)

    e = failure(check.char_encode_decode, char_encode, decode_popping)
    assert "changed its argument 1 in place" in e.detail and "do not modify the caller's data" in e.hint


def test_char_encode_that_extends_stoi_is_rejected():
    def encode_adding(text, stoi):
        for ch in text:
            stoi.setdefault(ch, len(stoi))
        return char_encode(text, stoi)

    e = failure(check.char_encode_decode, encode_adding, char_decode)
    assert "changed its argument 2 (stoi) in place" in e.detail
    assert "do not add unknown characters to stoi" in e.hint


def test_char_encode_decode_placeholders_are_not_attempted():
    with pytest.raises(NotAttempted):
        check.char_encode_decode(todo, char_decode)
    with pytest.raises(NotAttempted):
        check.char_encode_decode(char_encode, todo)


# --------------------------------------------------------------------- utf8_encode_decode


def test_utf8_reference_passes(capsys):
    check.utf8_encode_decode(utf8_encode, utf8_decode)
    assert capsys.readouterr().out.startswith("✓ utf8_encode_decode: ")


def test_ord_per_character_is_rejected_on_the_first_accent():
    e = failure(check.utf8_encode_decode, lambda t: [ord(c) for c in t], utf8_decode)
    assert "'café'" in e.detail and "expected [99, 97, 102, 195, 169]" in e.detail
    assert "ord(ch) is the character's code point, not its UTF-8 bytes" in e.hint


def test_latin1_is_rejected_with_the_same_explanation():
    e = failure(check.utf8_encode_decode, lambda t: list(t.encode("latin-1")), utf8_decode)
    assert "code point, not its UTF-8 bytes" in e.hint
    # With the ASCII/Latin-1 texts removed it crashes on '—' instead: same hint.
    e = failure(check.utf8_encode_decode,
                lambda t: list(t.encode("latin-1")) if t != "café" else utf8_encode(t), utf8_decode)
    assert "UnicodeEncodeError" in e.detail and "Latin-1" in e.hint


def test_bytes_instead_of_a_list_is_rejected():
    e = failure(check.utf8_encode_decode, lambda t: t.encode("utf-8"), utf8_decode)
    assert "got bytes" in e.detail and "not a bytes object" in e.hint


def test_utf8_wrong_containers_and_mutation_are_rejected():
    e = failure(check.utf8_encode_decode, lambda t: tuple(t.encode("utf-8")), utf8_decode)
    assert "expected list[int], got a tuple" in e.detail
    e = failure(check.utf8_encode_decode, lambda t: AlwaysEqualList(t.encode("utf-8")), utf8_decode)
    assert "AlwaysEqualList" in e.detail
    e = failure(check.utf8_encode_decode, utf8_encode, lambda ids: AlwaysEqualStr(bytes(ids).decode()))
    assert "expected str, got an AlwaysEqualStr" in e.detail

    def decode_in_place(ids):
        text = bytes(ids).decode("utf-8")
        ids.clear()
        return text

    e = failure(check.utf8_encode_decode, utf8_encode, decode_in_place)
    assert "changed its argument 1 in place" in e.detail


@pytest.mark.parametrize(("wrong_decode", "hint"), [
    (lambda ids: "".join(chr(b) for b in ids), "chr() of each byte"),
    (lambda ids: bytes(ids).decode("latin-1"), "chr() of each byte"),
    (lambda ids: "".join(bytes([b]).decode("utf-8") for b in ids), "decode all the bytes together"),
    (lambda ids: str(bytes(ids)), "str(bytes) gives the bytes' repr"),
    (lambda ids: bytes(ids), "turn the bytes into text"),
])
def test_utf8_decode_mistakes_get_the_matching_hint(wrong_decode, hint):
    assert hint in failure(check.utf8_encode_decode, utf8_encode, wrong_decode).hint


@pytest.mark.parametrize("errors", ["replace", "ignore"])
def test_utf8_decode_that_does_not_raise_on_broken_bytes_is_rejected(errors):
    e = failure(check.utf8_encode_decode, utf8_encode, lambda ids: bytes(ids).decode("utf-8", errors=errors))
    assert "utf8_decode([138, 116, 114, 101])" in e.detail and "instead of raising UnicodeDecodeError" in e.detail
    assert "errors='strict'" in e.hint


def test_utf8_placeholders_are_not_attempted():
    with pytest.raises(NotAttempted):
        check.utf8_encode_decode(todo, utf8_decode)
    with pytest.raises(NotAttempted):
        check.utf8_encode_decode(utf8_encode, todo)


NAMES = ("count_chars", "build_char_vocab", "char_encode_decode", "utf8_encode_decode")


def test_checks_are_registered_and_listed():
    for name in NAMES:
        assert name in dir(check)


# Lines of the reference solutions: no hint level, placeholder or failure hint may print them.
ANSWER_LINES = ("sorted(set(text))", "enumerate(itos)}", "list(text.encode", "bytes(ids).decode",
                "''.join(itos[i]", "counts.get(ch, 0) + 1", "ValueError(f")


@pytest.mark.parametrize("name", NAMES)
def test_each_exercise_has_two_hint_levels_that_do_not_print_the_answer(name, capsys):
    levels = core.HINTS[name]
    assert len(levels) == 2 and all(len(level) > 40 for level in levels)
    for level in levels:
        assert not any(line in level for line in ANSWER_LINES), level
    core._SHOWN.pop(name, None)
    check.hint(name)
    assert capsys.readouterr().out.startswith(f"{name}: (level 1 of 2) ")


def test_a_second_failure_reveals_the_next_hint_level():
    core._FAILURES.pop("count_chars", None)
    core._SHOWN.pop("count_chars", None)
    first = failure(check.count_chars, lambda t: {c: 1 for c in t})
    second = failure(check.count_chars, lambda t: {c: 1 for c in t})
    assert first.more is None and second.more.startswith("(level 1 of 2) ")


@pytest.mark.parametrize(("check_fn", "fns"), [
    (check.count_chars, (lambda t: dict(Counter(t.split())),)),
    (check.build_char_vocab, (lambda t: ({c: i for i, c in enumerate(dict.fromkeys(t))}, list(dict.fromkeys(t))),)),
    (check.build_char_vocab, (lambda t: ({c: i + 1 for i, c in enumerate(sorted(set(t)))}, sorted(set(t))),)),
    (check.char_encode_decode, (lambda t, stoi: [stoi[c] for c in t], char_decode)),
    (check.char_encode_decode, (char_encode, lambda ids, itos: " ".join(itos[i] for i in ids))),
    (check.utf8_encode_decode, (lambda t: [ord(c) for c in t], utf8_decode)),
    (check.utf8_encode_decode, (lambda t: t.encode(), utf8_decode)),
    (check.utf8_encode_decode, (utf8_encode, lambda ids: "".join(chr(b) for b in ids))),
    (check.utf8_encode_decode, (utf8_encode, lambda ids: bytes(ids).decode("utf-8", "replace"))),
])
def test_failure_hints_do_not_print_the_answer(check_fn, fns):
    e = failure(check_fn, *fns)
    assert not any(line in e.hint for line in ANSWER_LINES), e.hint
