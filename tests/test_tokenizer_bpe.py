"""Byte-level BPE from scratch: incremental training against a naive trainer, encoding
against Hugging Face, GPT-2 files, special tokens and pre-token boundaries."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from itertools import pairwise

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from course.errors import TokenizerError
from course.tokenizer import EOS_TOKEN, ByteBPETokenizer, load_tokenizer
from course.tokenizer.pretokenize import (
    bytes_to_printable,
    bytes_to_unicode,
    pretokenize,
    printable_to_bytes,
    split_special,
    tokenizers_pretokenize,
)

PARAGRAPH = """\
The lighthouse keeper's daughter counted ships at dusk. There were 3 on Monday, 17 on
Tuesday and, on the stormy Wednesday, none at all. She'd written their names in a ledger
since she was nine: the Marigold, the Heron, the Patient Grace. "They'll come back," her
father said, though he didn't believe it. The sea doesn't keep promises; it keeps time.

In winter the lamp burned 14 hours a night. Oil, wicks, glass: everything wore out, and
everything was replaced. We've all got a lamp like that, she thought, something we tend
because we're afraid of what the dark would say if we stopped.   Naïve? Perhaps. Café
owners in the harbour town called her "la gardienne" — the keeper — and left her bread.
"""

# Text that exercises everything pre-tokenization and byte-level BPE must handle.
VARIED = [
    "",
    "the",
    " the",
    "Hello, world! The keeper's lamp burned.",
    "I'll we've they're it's she'd you'm DON'T 'S 's'",
    "digits 0 12 345 6789 3.14159 1,000,000 ²³ ٣٤",
    "whitespace   runs\t\ttabs\n\n\nnewlines \r\n crlf    ",
    "    leading and trailing    ",
    "\u00a0nbsp\u3000ideographic\u2028line sep",
    "naïve café — 東京 😀👩‍👩‍👧 e\u0301 مرحبا Ελληνικά",
    f"end of one{EOS_TOKEN}start of next",
    f"{EOS_TOKEN}{EOS_TOKEN} {EOS_TOKEN}\n",
    "<|endoftext| almost <|endof special",
    " " * 300 + "x" + "\n" * 50,
]


# ---------------------------------------------------------------------------------------
# A deliberately simple reference trainer: recount every pair after every merge.
# Tokens are byte strings, so a merge that rebuilds an existing token reuses it for free.
# ---------------------------------------------------------------------------------------
GPT2_RE = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def naive_train(texts: list[str], vocab_size: int, specials=(EOS_TOKEN,)) -> list[tuple[bytes, bytes]]:
    words: list[list[bytes]] = []  # one entry per pre-token *occurrence*
    for text in texts:
        parts = regex.split("|".join(regex.escape(s) for s in specials), text)
        for part in parts:
            for piece in GPT2_RE.findall(part):
                words.append([bytes([b]) for b in piece.encode("utf-8")])
    tokens = {bytes([b]) for b in range(256)}
    merges = []
    while len(tokens) < vocab_size - len(specials):
        counts = Counter(p for w in words for p in pairwise(w))
        if not counts:
            break
        best = max(counts, key=lambda p: (counts[p], p[0], p[1]))
        merges.append(best)
        tokens.add(best[0] + best[1])
        for k, w in enumerate(words):
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[k] = out
    return merges


@pytest.fixture(scope="module")
def tok() -> ByteBPETokenizer:
    return ByteBPETokenizer().train(PARAGRAPH, vocab_size=400)


# ---- training ------------------------------------------------------------------------
def test_trained_vocabulary_layout(tok):
    assert tok.vocab_size == 400
    assert tok.eos_id == 399 and tok.special_tokens == {EOS_TOKEN: 399}
    assert all(tok.token_bytes(i) == bytes([i]) for i in range(256))
    # merges create ids 256, 257, ... in order
    for k, (a, b) in enumerate(tok.merges):
        assert tok.token_bytes(256 + k) == a + b
    assert tok.token_bytes(tok.eos_id) == EOS_TOKEN.encode()


def test_incremental_training_equals_naive_on_paragraph():
    docs = PARAGRAPH.split("\n\n")
    ours = ByteBPETokenizer().train(docs, 256 + 1 + 120).merges
    assert ours == naive_train(docs, 256 + 1 + 120)
    assert len(ours) == 120


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(st.text(alphabet="ab c'\n1é", max_size=40), max_size=6),
    extra=st.integers(0, 40),
)
def test_incremental_training_equals_naive_on_random_text(texts, extra):
    vocab_size = 256 + 1 + extra
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ByteBPETokenizer().train(texts, vocab_size).merges == naive_train(texts, vocab_size)


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(max_size=30), max_size=4), extra=st.integers(0, 15))
def test_incremental_training_equals_naive_on_any_unicode(texts, extra):
    vocab_size = 256 + 1 + extra
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short texts run out of pairs: that warns
        assert ByteBPETokenizer().train(texts, vocab_size).merges == naive_train(texts, vocab_size)


@pytest.mark.parametrize(
    ("texts", "n", "expected"),
    [
        # all three pairs occur once: the greatest left bytes wins (b"c" > b"a" > b" ")
        (["ab cd"], 3, [(b"c", b"d"), (b"a", b"b"), (b" ", b"cd")]),
        # same left bytes: the greatest right bytes wins
        (["ab", "ac"], 2, [(b"a", b"c"), (b"a", b"b")]),
        # a higher count beats greater bytes
        (["ab", "ab", "zz"], 2, [(b"a", b"b"), (b"z", b"z")]),
        # a prefix is smaller: after (a, b), (ab, x) ties with (a, y) and b"ab" > b"a"
        (["ab"] * 5 + ["abx", "ay"], 3, [(b"a", b"b"), (b"ab", b"x"), (b"a", b"y")]),
        # bytes compare unsigned: the UTF-8 bytes of "é" (0xC3 0xA9) beat ASCII "zz"
        (["é", "zz"], 2, [(b"\xc3", b"\xa9"), (b"z", b"z")]),
        # overlapping pairs merge left to right: "aaa" → aa·a, then (aa, a)
        (["aaa"], 2, [(b"a", b"a"), (b"aa", b"a")]),
    ],
)
def test_hand_made_tie_breaks(texts, n, expected):
    merges = ByteBPETokenizer().train(texts, 256 + 1 + n).merges
    assert merges == expected
    assert naive_train(texts, 256 + 1 + n) == expected


def test_training_stops_early_with_a_warning_when_no_pair_is_left():
    with pytest.warns(UserWarning, match="only supports"):
        t = ByteBPETokenizer().train("abab", 300)
    assert t.merges == [(b"a", b"b"), (b"ab", b"ab")]
    assert t.vocab_size == 256 + 2 + 1


@pytest.mark.parametrize("bad", [0, 255, 256, 3.5, "512", True])
def test_vocab_size_too_small_or_not_int_is_rejected(bad):
    with pytest.raises(TokenizerError, match="at least 257"):
        ByteBPETokenizer().train(PARAGRAPH, bad)
    with pytest.raises(TokenizerError, match="at least 258"):
        ByteBPETokenizer().train(PARAGRAPH, 257, special_tokens=(EOS_TOKEN, "<pad>"))


def test_special_tokens_list_must_hold_eos_and_be_distinct():
    with pytest.raises(TokenizerError, match="lacks"):
        ByteBPETokenizer().train(PARAGRAPH, 300, special_tokens=("<pad>",))
    with pytest.raises(TokenizerError, match="duplicates"):
        ByteBPETokenizer().train(PARAGRAPH, 300, special_tokens=(EOS_TOKEN, EOS_TOKEN))
    with pytest.raises(TokenizerError, match="single string"):
        ByteBPETokenizer().train(PARAGRAPH, 300, special_tokens=EOS_TOKEN)


def test_training_on_non_strings_says_which_text():
    with pytest.raises(TokenizerError, match="#1"):
        ByteBPETokenizer().train(["fine", b"bytes"], 300)


def test_train_returns_self_and_accepts_a_generator():
    t = ByteBPETokenizer()
    assert t.train((d for d in PARAGRAPH.split("\n\n")), 300) is t
    assert t.vocab_size == 300


# ---- special tokens and pre-token boundaries -----------------------------------------------
def test_special_tokens_in_training_text_are_walls_never_merged():
    body = "keep the lamp lit"
    with_eos = EOS_TOKEN.join([body] * 30)
    t = ByteBPETokenizer().train(with_eos, 266)
    # exactly the same as training on the pieces as separate documents
    assert t.merges == ByteBPETokenizer().train([body] * 30, 266).merges
    for i in range(256, t.eos_id):
        piece = t.token_bytes(i)
        assert b"<|" not in piece and b"|>" not in piece and b"endof" not in piece


def test_two_special_tokens_keep_their_ids_and_order():
    t = ByteBPETokenizer().train(PARAGRAPH, 300, special_tokens=(EOS_TOKEN, "<|pad|>"))
    assert t.special_tokens == {EOS_TOKEN: 298, "<|pad|>": 299}
    ids = t.encode(f"a<|pad|>b{EOS_TOKEN}")
    assert ids == [t.encode("a")[0], 299, t.encode("b")[0], 298]


def test_eos_in_the_middle_of_text_is_one_id_and_round_trips(tok):
    text = f"the lamp{EOS_TOKEN}the ledger"
    ids = tok.encode(text)
    assert ids.count(tok.eos_id) == 1
    k = ids.index(tok.eos_id)
    assert ids[:k] == tok.encode("the lamp") and ids[k + 1:] == tok.encode("the ledger")
    assert tok.decode(ids) == text
    # encode_ordinary treats it as plain characters
    assert tok.eos_id not in tok.encode_ordinary(text)
    assert tok.decode(tok.encode_ordinary(text)) == text


def test_split_special_prefers_the_longest_match():
    assert split_special("x<a><ab>y", ["<a>", "<ab>"]) == [("x", False), ("<a>", True), ("<ab>", True), ("y", False)]
    assert split_special("<ab>", ["<a", "<ab>"]) == [("<ab>", True)]
    assert split_special("", [EOS_TOKEN]) == []


def _boundaries(pieces: list[bytes]) -> set[int]:
    out, pos = {0}, 0
    for p in pieces:
        pos += len(p)
        out.add(pos)
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from(list("the keeper's lamp 14\n\t—é!?")), max_size=80))
def test_no_token_spans_two_pretokens(tok, text):
    ids = tok.encode(text)
    token_cuts = _boundaries([tok.token_bytes(i) for i in ids])
    pre_cuts = _boundaries([p.encode() for p in pretokenize(text)])
    assert pre_cuts <= token_cuts


def test_pretokenize_matches_gpt2_examples():
    assert pretokenize("Hello  world's 42!") == ["Hello", " ", " world", "'s", " 42", "!"]
    # whitespace before a word leaves its last space for the word: "\s+(?!\S)"
    assert pretokenize("a   b") == ["a", "  ", " b"]
    assert pretokenize("a   \n\nb") == ["a", "   \n", "\n", "b"]
    assert "".join(pretokenize(PARAGRAPH)) == PARAGRAPH


def test_bytes_to_unicode_is_gpt2s_map():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"
    assert printable_to_bytes(bytes_to_printable(bytes(range(256)))) == bytes(range(256))


# ---- encoding and decoding ---------------------------------------------------------------
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text())
def test_decode_encode_round_trips_any_unicode(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_encode_is_cached_and_stable(tok):
    a = tok.encode(PARAGRAPH)
    assert tok.encode(PARAGRAPH) == a
    assert tok.encode_batch([PARAGRAPH, "the"]) == [a, tok.encode("the")]
    assert len(a) < len(PARAGRAPH.encode()) / 1.8  # merges compress the training text


def test_a_lone_byte_fragment_decodes_to_replacement_char(tok):
    first, second = 0xC3, 0xA9  # the UTF-8 bytes of "é"; ids 0..255 are the bytes
    assert tok.decode([first]) == "\ufffd"
    assert tok.decode([first, second]) == "é"
    assert tok.token_str(first) == "\\xc3"
    assert tok.token_str(tok.encode(" the")[0]) == " the"


def test_decode_rejects_ids_outside_the_vocabulary(tok):
    with pytest.raises(TokenizerError, match="outside"):
        tok.decode([1, tok.vocab_size])
    with pytest.raises(TokenizerError, match="outside"):
        tok.decode([-1])


def test_lone_surrogate_is_a_clear_error(tok):
    with pytest.raises(TokenizerError, match="surrogate"):
        tok.encode("a\ud800b")


def test_long_whitespace_run_is_fast_and_exact(tok):
    text = " " * 20000 + "x"
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode(text) == tok.to_hf().encode(text)


# ---- equality with Hugging Face ----------------------------------------------------------
def _engines_agree(c: str) -> bool:
    # Both engines run GPT-2's pattern, but with their own Unicode tables; characters added
    # in the newest Unicode versions can be classified differently (see pretokenize.py).
    probe = f"a{c}b {c}{c} 1{c}  {c}\n{c}"
    return pretokenize(probe) == tokenizers_pretokenize(probe)


def test_pretokenizers_agree_on_common_scripts():
    for text in VARIED + [PARAGRAPH]:
        t = text.replace(EOS_TOKEN, "")
        assert pretokenize(t) == tokenizers_pretokenize(t)


@pytest.fixture(scope="module")
def saved(tok, tmp_path_factory):
    d = tmp_path_factory.mktemp("bpe")
    tok.save(d)
    return d


def test_saved_tokenizer_json_encodes_like_ours(tok, saved):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    assert {"tokenizer.json", "tokenizer_config.json", "course_tokenizer.json"} <= {p.name for p in saved.iterdir()}
    fast = PreTrainedTokenizerFast(tokenizer_file=str(saved / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(str(saved))
    assert auto.eos_token == EOS_TOKEN and auto.eos_token_id == tok.eos_id
    for text in VARIED + [PARAGRAPH]:
        ids = tok.encode(text)
        assert fast.encode(text) == ids, text
        assert auto.encode(text) == ids, text
        assert auto.decode(ids) == text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(exclude_categories=("Cs",)).filter(_engines_agree)))
def test_hf_backend_encodes_like_ours_on_random_text(tok, text):
    hf = _backend(tok)
    assert hf.encode(text, add_special_tokens=False).ids == tok.encode(text)


_BACKENDS: dict[int, object] = {}


def _backend(t):
    if id(t) not in _BACKENDS:
        _BACKENDS[id(t)] = t._hf_backend()
    return _BACKENDS[id(t)]


def _random_merges(draw_pairs: list[tuple[int, int]]) -> list[tuple[bytes, bytes]]:
    tokens = [b"a", b"b", b" "]
    merges = []
    for i, j in draw_pairs:
        left, right = tokens[i % len(tokens)], tokens[j % len(tokens)]
        merges.append((left, right))
        if left + right not in tokens:
            tokens.append(left + right)
    return merges


@settings(max_examples=300, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=25),
    texts=st.lists(st.text(alphabet="ab ", max_size=25), min_size=1, max_size=5),
)
def test_encoding_with_arbitrary_merge_lists_matches_hf(pairs, texts):
    # Hand-made merge lists, including ones that rebuild a token two ways (ab·c and a·bc)
    # or repeat a pair: our encoder must follow Hugging Face's rank/position rule exactly.
    t = ByteBPETokenizer(_random_merges(pairs))
    hf = t._hf_backend()
    for text in texts:
        assert hf.encode(text, add_special_tokens=False).ids == t.encode(text)
        assert t.decode(t.encode(text)) == text


def test_a_token_built_two_ways_keeps_one_id():
    t = ByteBPETokenizer([(b"a", b"b"), (b"b", b"c"), (b"ab", b"c"), (b"a", b"bc")])
    assert t.vocab_size == 256 + 3 + 1
    abc = t.encode("abc")
    assert len(abc) == 1 and t.token_bytes(abc[0]) == b"abc"
    assert t.encode("abc") == t._hf_backend().encode("abc").ids


def test_merges_that_use_unknown_tokens_are_rejected():
    with pytest.raises(TokenizerError, match="merge #0"):
        ByteBPETokenizer([(b"ab", b"c")])


# ---- save / load and GPT-2 files -------------------------------------------------------------
def test_save_and_load_round_trip(tok, saved):
    back = load_tokenizer(saved)
    assert type(back) is ByteBPETokenizer
    assert back.merges == tok.merges and back.vocab == tok.vocab and back.special_tokens == tok.special_tokens
    for text in VARIED:
        assert back.encode(text) == tok.encode(text)


def test_gpt2_files_load_in_transformers_and_back(tok, tmp_path):
    from transformers import GPT2TokenizerFast

    vocab_path, merges_path = tok.save_gpt2_files(tmp_path)
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    assert vocab["Ġ"] == ord(" ") and vocab[EOS_TOKEN] == tok.eos_id
    assert merges_path.read_text(encoding="utf-8").startswith("#version: 0.2\n")
    ref = GPT2TokenizerFast.from_pretrained(str(tmp_path))
    assert len(ref) == tok.vocab_size
    ours = ByteBPETokenizer.from_gpt2_files(vocab_path, merges_path)
    assert ours.vocab == tok.vocab and ours.merges == tok.merges
    for text in VARIED + [PARAGRAPH]:
        assert ref.encode(text) == tok.encode(text) == ours.encode(text), text


def test_gpt2_files_with_foreign_id_order_and_missing_eos(tmp_path):
    # GPT-2's real vocab.json does not put byte b at id b; keep the file's ids.
    printable = [bytes_to_unicode()[b] for b in range(256)]
    order = sorted(printable)  # ids by printable character, like the released GPT-2 file
    vocab = {c: i for i, c in enumerate(order)}
    vocab["Ġt"] = 256
    vocab["he"] = 257
    vocab["Ġthe"] = 258
    (tmp_path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\nĠ t\nh e\nĠt he\n", encoding="utf-8")
    from transformers import GPT2TokenizerFast

    ref = GPT2TokenizerFast.from_pretrained(str(tmp_path))
    ours = ByteBPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert ours.eos_id == 259  # appended after the file's ids, as transformers does
    for text in ["the the", f"there{EOS_TOKEN} the", "  héllo\n", "123"]:
        assert ref.encode(text) == ours.encode(text)
        assert ours.decode(ours.encode(text)) == text


def test_bad_gpt2_files_raise_tokenizer_error(tmp_path):
    (tmp_path / "vocab.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerError, match="not readable JSON"):
        ByteBPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    (tmp_path / "vocab.json").write_text(json.dumps({"€uro": 0}), encoding="utf-8")
    with pytest.raises(TokenizerError, match="byte alphabet"):
        ByteBPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    vocab = {bytes_to_unicode()[b]: b for b in range(256)}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(TokenizerError, match="merges.txt"):
        ByteBPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b c\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match="line 2"):
        ByteBPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match="not in the vocabulary"):
        ByteBPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
