"""Character tokenizer, the Hugging Face byte-level BPE wrapper, `train_tokenizer` and
save / `load_tokenizer` for every kind, checked against `transformers` loading our files."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from course.errors import TokenizerError
from course.tokenizer import (
    EOS_TOKEN,
    TOKENIZER_KINDS,
    ByteBPETokenizer,
    CharTokenizer,
    HFByteBPETokenizer,
    Tokenizer,
    load_tokenizer,
    train_tokenizer,
)

TEXT = """\
Rain came in sideways off the estuary, and the ferry's horn sounded twice: once for the
tide, once for luck. Mara had 2 bags, 1 umbrella and 0 patience. "We're late," she said,
to nobody. The timetable disagreed; timetables usually do.

At 7:45 the boat finally left. Gulls followed it, then gave up. She'd brought a thermos
of tea, a paperback with a cracked spine, and a list of 12 things she'd never say out
loud.	Tabs\tand  double  spaces  live  here  too.
Crème brûlée, jalapeño, façade — and 東京, 🌧️, Ελλάδα for good measure.
"""

VARIED = [
    "",
    "the ferry",
    "Rain  came\n\n\n  in\t\tsideways   ",
    "We're late, they'll say; it's 7:45 and I've 12 bags, DON'T 'LL",
    "0 1 22 333 4444 55555 2.5 1,000",
    f"first document{EOS_TOKEN}second document",
    f"{EOS_TOKEN}{EOS_TOKEN}\n{EOS_TOKEN} trailing ",
    "<|endoftext| <|endof |endoftext|>",
    "Crème brûlée 東京 🌧️ Ελλάδα — façade",
    "\r\n\r\n  \n",
]

BYTE_LEVEL_EXTRA = ["naïve 😀👩‍👩‍👧 e\u0301 مرحبا \u00a0\u3000 ٣٤ ²", " " * 200 + "x"]


@pytest.fixture(scope="module")
def char_tok() -> CharTokenizer:
    # Every character of VARIED must be in the alphabet for the equivalence tests.
    return CharTokenizer().train([TEXT, *VARIED])


@pytest.fixture(scope="module")
def hf_tok() -> HFByteBPETokenizer:
    return HFByteBPETokenizer().train(TEXT, 400)


@pytest.fixture(scope="module")
def trained(char_tok, hf_tok) -> dict[str, Tokenizer]:
    return {"char": char_tok, "hf-bpe": hf_tok, "bpe": ByteBPETokenizer().train(TEXT, 400)}


# ---- character tokenizer -------------------------------------------------------------------
def test_char_vocabulary_is_sorted_characters_then_specials():
    t = CharTokenizer().train(f"banana{EOS_TOKEN} band\n", special_tokens=(EOS_TOKEN, "<|pad|>"))
    assert t.chars == ["\n", " ", "a", "b", "d", "n"]  # the special token's characters do not count
    assert t.special_tokens == {EOS_TOKEN: 6, "<|pad|>": 7}
    assert t.vocab_size == 8 and t.eos_id == 6
    assert t.encode("band") == [3, 2, 5, 4]
    assert t.encode(f"a{EOS_TOKEN}b<|pad|>") == [2, 6, 3, 7]
    assert [t.token_str(i) for i in t.encode("a b")] == ["a", " ", "b"]


def test_char_unknown_character_error_names_it_and_says_what_to_do(char_tok):
    with pytest.raises(TokenizerError) as err:
        char_tok.encode("the ferry Ω and ∑")
    msg = str(err.value)
    assert "'Ω'" in msg and "'∑'" in msg and "2 character(s)" in msg
    assert "Train the tokenizer on text that contains them" in msg and "byte-level" in msg


def test_char_training_on_nothing_is_an_error():
    with pytest.raises(TokenizerError, match="no characters"):
        CharTokenizer().train(["", EOS_TOKEN])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_char_round_trip_over_its_alphabet(char_tok, data):
    text = data.draw(st.text(alphabet=st.sampled_from(char_tok.chars)))
    ids = char_tok.encode(text)  # may contain <|endoftext|>, spelled by hypothesis
    assert char_tok.decode(ids) == text
    assert len(char_tok.encode_ordinary(text)) == len(text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_char_tokenizer_json_encodes_like_ours_on_random_text(char_tok, data):
    alphabet = st.sampled_from(char_tok.chars)
    pieces = data.draw(st.lists(st.one_of(st.text(alphabet=alphabet, max_size=8), st.just(EOS_TOKEN)), max_size=6))
    text = "".join(pieces)
    backend = char_tok._hf_backend()
    assert backend.encode(text, add_special_tokens=False).ids == char_tok.encode(text)


# ---- Hugging Face byte-level BPE -------------------------------------------------------------
def test_hf_bpe_layout_and_specials(hf_tok):
    assert hf_tok.vocab_size == 400
    assert hf_tok.eos_id == 0 and hf_tok.special_tokens == {EOS_TOKEN: 0}
    ids = hf_tok.encode(f"a{EOS_TOKEN}b")
    assert ids == [hf_tok.encode("a")[0], 0, hf_tok.encode("b")[0]]
    assert hf_tok.eos_id not in hf_tok.encode_ordinary(f"a{EOS_TOKEN}b")
    assert hf_tok.decode(hf_tok.encode_ordinary(f"a{EOS_TOKEN}b")) == f"a{EOS_TOKEN}b"
    assert hf_tok.token_str(hf_tok.encode(" the")[0]) == " the"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text())
def test_hf_bpe_round_trips_any_unicode(hf_tok, text):
    assert hf_tok.decode(hf_tok.encode(text)) == text


def test_hf_bpe_special_tokens_in_training_text_are_not_learned():
    t = HFByteBPETokenizer().train(EOS_TOKEN.join(["the tide"] * 40), 270)
    for a, b in t.merges:
        assert b"endof" not in a + b and b"<|" not in a + b and b"|>" not in a + b


def test_hf_bpe_merges_equal_ours_when_there_are_no_ties():
    texts = ["ab"] * 9 + ["cd"] * 5 + ["ef"] * 2
    ours = ByteBPETokenizer().train(texts, 260).merges
    theirs = HFByteBPETokenizer().train(texts, 260).merges
    assert ours == theirs == [(b"a", b"b"), (b"c", b"d"), (b"e", b"f")]


def test_hf_bpe_untrained_knows_all_bytes():
    t = HFByteBPETokenizer()
    assert t.vocab_size == 257 and t.eos_id == 0
    text = "any text — 東京"
    assert t.decode(t.encode(text)) == text and len(t.encode(text)) == len(text.encode())


def test_hf_bpe_from_file_requires_eos(tmp_path):
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import models

    raw = RawTokenizer(models.BPE(vocab={"a": 0}, merges=[]))
    raw.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(TokenizerError, match="has no .* special token"):
        HFByteBPETokenizer.from_file(tmp_path / "tokenizer.json")
    with pytest.raises(TokenizerError, match="does not exist"):
        HFByteBPETokenizer.from_file(tmp_path / "missing.json")


# ---- train_tokenizer -------------------------------------------------------------------------
def test_train_tokenizer_dispatches_by_kind():
    assert TOKENIZER_KINDS == ("bpe", "char", "hf-bpe")
    assert isinstance(train_tokenizer("bpe", TEXT, 300), ByteBPETokenizer)
    assert isinstance(train_tokenizer("hf-bpe", TEXT, 300), HFByteBPETokenizer)
    char = train_tokenizer("char", TEXT, vocab_size=10_000)  # ignored for characters
    assert isinstance(char, CharTokenizer) and char.vocab_size == len(set(TEXT)) + 1
    assert train_tokenizer("bpe", TEXT).vocab_size == 512


def test_unknown_kind_lists_the_valid_ones():
    with pytest.raises(TokenizerError) as err:
        train_tokenizer("wordpiece", TEXT)
    msg = str(err.value)
    assert "'wordpiece'" in msg and all(repr(k) in msg for k in TOKENIZER_KINDS)


@pytest.mark.parametrize("kind", ["bpe", "hf-bpe"])
def test_bad_vocab_size_is_rejected_with_the_minimum(kind):
    with pytest.raises(TokenizerError, match=r"vocab_size=100 .*at least 257"):
        train_tokenizer(kind, TEXT, 100)


# ---- every kind: Hugging Face files, save / load -------------------------------------------
def _texts_for(kind: str) -> list[str]:
    return VARIED + [TEXT] + ([] if kind == "char" else BYTE_LEVEL_EXTRA)


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_saved_tokenizer_json_loads_in_transformers_and_encodes_identically(kind, trained, tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = trained[kind]
    tok.save(tmp_path)
    assert {"tokenizer.json", "tokenizer_config.json", "course_tokenizer.json"} <= {p.name for p in tmp_path.iterdir()}
    fast = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(str(tmp_path))
    assert auto.eos_token == EOS_TOKEN and auto.eos_token_id == tok.eos_id
    assert len(auto) == tok.vocab_size
    for text in _texts_for(kind):
        ids = tok.encode(text)
        assert fast.encode(text) == ids, (kind, text)
        assert auto.encode(text) == ids, (kind, text)
        assert auto.decode(ids) == text, (kind, text)
    hf = tok.to_hf()
    assert hf.eos_token_id == tok.eos_id and hf.encode(TEXT) == tok.encode(TEXT)


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_save_load_round_trip_restores_class_and_behaviour(kind, trained, tmp_path):
    tok = trained[kind]
    back = load_tokenizer(tok.save(tmp_path / "nested" / "dir"))
    assert type(back) is type(tok)
    assert back.vocab_size == tok.vocab_size and back.eos_id == tok.eos_id
    assert back.special_tokens == tok.special_tokens
    assert back.encode_batch(_texts_for(kind)) == tok.encode_batch(_texts_for(kind))
    assert all(back.token_bytes(i) == tok.token_bytes(i) for i in range(tok.vocab_size))


def test_save_load_keeps_extra_special_tokens(tmp_path):
    for kind in TOKENIZER_KINDS:
        tok = train_tokenizer(kind, TEXT, 300, special_tokens=(EOS_TOKEN, "<|pad|>"))
        back = load_tokenizer(tok.save(tmp_path / kind))
        text = f"the tide<|pad|>the ferry{EOS_TOKEN}"
        assert back.encode(text) == tok.encode(text)
        assert back.special_tokens == tok.special_tokens and len(back.special_tokens) == 2


def test_batch_encoding_equals_one_by_one(trained):
    for kind, tok in trained.items():
        texts = _texts_for(kind)
        assert tok.encode_batch(texts) == [tok.encode(t) for t in texts], kind


def test_decode_rejects_unknown_ids(trained):
    for tok in trained.values():
        with pytest.raises(TokenizerError, match="outside"):
            tok.decode([tok.vocab_size + 5])
        with pytest.raises(TokenizerError, match="outside"):
            tok.token_str(-1)


# ---- broken directories --------------------------------------------------------------------
@pytest.fixture
def saved_dir(trained, tmp_path):
    return trained["bpe"].save(tmp_path / "tok")


def test_missing_directory_is_a_tokenizer_error(tmp_path):
    with pytest.raises(TokenizerError, match="does not exist"):
        load_tokenizer(tmp_path / "nowhere")


def test_directory_without_course_file_is_a_tokenizer_error(saved_dir):
    (saved_dir / "course_tokenizer.json").unlink()
    with pytest.raises(TokenizerError, match="no course_tokenizer.json.*HFByteBPETokenizer.from_file"):
        load_tokenizer(saved_dir)
    (saved_dir / "tokenizer.json").unlink()
    with pytest.raises(TokenizerError, match="course_tokenizer.json does not exist"):
        load_tokenizer(saved_dir)


def test_directory_without_tokenizer_json_is_a_tokenizer_error(saved_dir):
    (saved_dir / "tokenizer.json").unlink()
    with pytest.raises(TokenizerError, match="no tokenizer.json"):
        load_tokenizer(saved_dir)


def test_unknown_kind_in_course_file_is_a_tokenizer_error(saved_dir):
    (saved_dir / "course_tokenizer.json").write_text(json.dumps({"kind": "sentencepiece"}))
    with pytest.raises(TokenizerError, match="'sentencepiece'"):
        load_tokenizer(saved_dir)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda s: s[: len(s) // 2],  # truncated JSON
        lambda s: json.dumps({"model": {"type": "BPE"}}),  # no vocab
        lambda s: json.dumps({**json.loads(s), "added_tokens": []}),  # EOS lost
        lambda s: s.replace('"Ġ"', '"Ω"'),  # a vocabulary entry outside the byte alphabet
        lambda s: json.dumps({**json.loads(s), "model": {**json.loads(s)["model"], "type": "WordPiece"}}),
    ],
)
def test_corrupted_tokenizer_json_is_a_tokenizer_error(saved_dir, corrupt):
    path = saved_dir / "tokenizer.json"
    path.write_text(corrupt(path.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        load_tokenizer(saved_dir)


@pytest.mark.parametrize("kind", ["char", "hf-bpe"])
def test_corrupted_files_of_other_kinds_are_tokenizer_errors(kind, trained, tmp_path):
    d = trained[kind].save(tmp_path / kind)
    path = d / "tokenizer.json"
    path.write_text(path.read_text(encoding="utf-8")[:100], encoding="utf-8")
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        load_tokenizer(d)
    shutil.rmtree(d)
    with pytest.raises(TokenizerError, match="does not exist"):
        load_tokenizer(d)


def test_lone_surrogates_are_tokenizer_errors_for_byte_level_kinds(trained):
    for kind in ("bpe", "hf-bpe"):
        with pytest.raises(TokenizerError, match="surrogate"):
            trained[kind].encode("tide\udc80")
    with pytest.raises(TokenizerError, match="surrogate"):
        trained["hf-bpe"].encode_batch(["fine", "tide\udc80"])


def test_decode_accepts_tensors_and_iterables(trained):
    import torch

    for tok in trained.values():
        ids = tok.encode("the ferry")
        assert tok.decode(torch.tensor(ids)) == tok.decode(iter(ids)) == "the ferry"
