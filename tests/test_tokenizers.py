"""Round-trip properties of the text domains (hypothesis)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from studio.domains.base import Document
from studio.domains.chars import SEPARATOR, CharsDomain
from studio.domains.words import UNKNOWN, WordsDomain, split_tokens
from studio.errors import StudioError

texts = st.text(
    alphabet=st.characters(blacklist_characters=SEPARATOR + UNKNOWN, blacklist_categories=("Cs",)), max_size=300
)


@given(texts)
@settings(max_examples=200, deadline=None)
def test_chars_round_trip_any_unicode(text):
    domain = CharsDomain.from_documents([Document("x", text or "a")])
    assert domain.decode(domain.encode(text)) == text
    assert len(domain.encode(text)) == len(text)  # code points, not bytes or UTF-16 units


def test_chars_keeps_emoji_and_accents_as_single_tokens():
    text = "Café 🎵 naïve — 𝄞"
    domain = CharsDomain.from_documents([Document("x", text)])
    ids = domain.encode(text)
    assert len(ids) == len(text) == 16  # one id per code point; 🎵 and 𝄞 are outside the BMP
    assert domain.decode(ids) == text


def test_chars_config_round_trip_and_separator():
    domain = CharsDomain.from_documents([Document("x", "hello"), Document("y", "world")])
    again = CharsDomain.from_config(domain.to_config())
    assert again.symbols == domain.symbols
    ids = domain.corpus_ids([Document("x", "hello"), Document("y", "world")])
    assert list(ids).count(domain.separator_id) == 3  # opens each document, ends the last


def test_chars_unknown_characters_are_named():
    domain = CharsDomain.from_documents([Document("x", "abc")])
    try:
        domain.encode("abz!")
    except StudioError as error:
        assert "'z'" in str(error) and "'!'" in str(error)
    else:
        raise AssertionError("unknown characters must raise StudioError")


@given(texts)
@settings(max_examples=200, deadline=None)
def test_words_round_trip_when_tokens_known(text):
    domain = WordsDomain.from_documents([Document("x", text)], vocab_size=100_000)
    assert domain.decode(domain.encode(text)) == text
    assert "".join(split_tokens(text)) == text


def test_words_vocabulary_cap_and_unknown():
    corpus = "the cat sat on the mat. the dog sat."
    domain = WordsDomain.from_documents([Document("x", corpus)], vocab_size=5)
    assert domain.vocab_size == 5
    kept = domain.tokens[2:]
    assert kept[0] == "the" or kept[0] == " "  # most frequent first
    ids = domain.encode("the zebra")
    assert domain.unknown_id in ids
    assert UNKNOWN in domain.decode(ids)


def test_words_splits_whitespace_and_punctuation():
    assert split_tokens("Hi,  there!\n\tok") == ["Hi", ",", "  ", "there", "!", "\n\t", "ok"]
