"""Corpus reading: recursion, skipped files, clear errors."""

import pytest

from studio.domains import guess_domain
from studio.domains.chars import read_text_corpus
from studio.errors import StudioError


def test_reads_folder_recursively_and_skips_binary(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "sub" / "b.md").write_text("# world")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    documents = read_text_corpus(tmp_path)
    assert sorted(d.content for d in documents) == ["# world", "hello"]
    err = capsys.readouterr().err
    assert "skipped 2" in err and "blob.bin" in err and "latin1.txt" in err
    assert err.count("warning") == 1


def test_missing_path(tmp_path):
    with pytest.raises(StudioError, match="not found"):
        read_text_corpus(tmp_path / "nope")


def test_empty_folder(tmp_path):
    with pytest.raises(StudioError, match="no usable files"):
        read_text_corpus(tmp_path)


def test_binary_only_corpus(tmp_path):
    (tmp_path / "x.dat").write_bytes(b"\x00" * 100)
    with pytest.raises(StudioError, match="no usable text"):
        read_text_corpus(tmp_path)


def test_domain_guess_from_file_types(tmp_path):
    (tmp_path / "a.py").write_text("x = 1")
    assert guess_domain(tmp_path) == "chars"
