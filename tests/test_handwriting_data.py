"""Stroke corpora and text encoding."""

import numpy as np
import pytest

from studio.domains.strokes import StrokesDomain
from studio.errors import StudioError
from studio.handwriting import data
from studio.handwriting.sample import wrap_lines


def test_hershey_example_is_a_pure_function_of_its_seed():
    config = data.HersheyCorpusConfig()
    text_a, strokes_a = data.hershey_example(config, 42)
    text_b, strokes_b = data.hershey_example(config, 42)
    assert text_a == text_b and text_a
    np.testing.assert_array_equal(strokes_a, strokes_b)
    assert strokes_a.dtype == np.float32 and strokes_a.shape[1] == 3
    assert strokes_a[-1, 2] == 1.0 and set(np.unique(strokes_a[:, 2])) <= {0.0, 1.0}
    assert data.hershey_example(config, 43)[0] != text_a or not np.array_equal(
        data.hershey_example(config, 43)[1], strokes_a
    )


def test_hershey_lines_use_only_the_alphabet_and_vary():
    config = data.HersheyCorpusConfig()
    examples = data.hershey_examples(config, range(40))
    assert all(set(text) <= set(config.alphabet) for text, _ in examples)
    widths = [np.ptp(np.cumsum(s[:, 0])) / max(1, len(t)) for t, s in examples]
    assert np.std(widths) > 0.5  # slant, scale and spacing differ per line


def test_omniglot_reader_flips_y_and_splits():
    valid = data.load_omniglot("valid")
    assert len(valid) > 900 and all(s.shape[1] == 3 for s in valid[:10])
    with pytest.raises(StudioError, match="split"):
        data.load_omniglot("nope")


def test_normalise_round_trip():
    strokes = data.hershey_example(data.HersheyCorpusConfig(), 1)[1]
    mean, std = data.offset_statistics([strokes])
    back = data.denormalise(data.normalise(strokes, mean, std), mean, std)
    np.testing.assert_allclose(back, strokes, atol=1e-4)


def test_pad_batch_teacher_forcing_layout():
    a = np.array([[1, 2, 0], [3, 4, 1]], np.float32)
    b = np.array([[5, 6, 1]], np.float32)
    inputs, targets, mask = data.pad_batch([a, b])
    assert inputs.shape == targets.shape == (2, 2, 3)
    np.testing.assert_array_equal(inputs[0], [[0, 0, 1], [1, 2, 0]])
    np.testing.assert_array_equal(targets[0], a)
    np.testing.assert_array_equal(mask, [[1, 1], [1, 0]])


def test_unknown_characters_are_named():
    domain = StrokesDomain(alphabet="abc ", conditional=True)
    with pytest.raises(StudioError) as error:
        domain.encode_text(["a b~é"])
    assert "'~'" in str(error.value) and "'é'" in str(error.value)
    np.testing.assert_array_equal(domain.encode_text(["ab", "c"]), [[1, 2], [3, 0]])


def test_domain_config_round_trip():
    domain = StrokesDomain(
        alphabet="xyz", mean=[1, 2], std=[3, 4], conditional=True, source="hershey", line_characters=16
    )
    again = StrokesDomain.from_config(domain.to_config())
    assert again.to_config() == domain.to_config()
    assert again.head == "mixture" and again.name == "strokes"


def test_wrap_lines():
    assert wrap_lines("Hello world", 16) == ["Hello world"]
    assert wrap_lines("the quick brown fox jumps", 10) == ["the quick", "brown fox", "jumps"]
    assert wrap_lines("a\n\nb", 10) == ["a", "b"]
    assert all(len(line) <= 5 for line in wrap_lines("abcdefghijkl", 5))
