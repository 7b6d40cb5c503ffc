"""The path-confinement helper on its own: names, roots, links and look-alikes."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.confine import check_name, confine, contain, escaping_links, is_plain_name, pick
from studio.errors import StudioError

LOOK_ALIKES = [
    "\uff0e\uff0e\uff0fetc",  # fullwidth full stops and solidus: '../etc' after NFKC
    "\u2024\u2024",  # two one-dot leaders: '..'
    "\u2025",  # two-dot leader: '..'
    "\u2024hidden",  # a one-dot leader in front: '.hidden'
    "a\uff0fb",  # fullwidth solidus
    "a\uff3cb",  # fullwidth reverse solidus
    "a\u2215b",  # division slash (no NFKC mapping)
    "a\u2044b",  # fraction slash (no NFKC mapping)
    "a\u29f8b",  # big solidus
    "\ufb01le",  # the 'fi' ligature: looks like 'file'
]


@pytest.fixture
def tree(tmp_path):
    """root/ with a corpus folder, a secret outside it, and links of every kind."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "corpus" / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (root / "corpus" / "a.txt").write_text("a")
    (root / "corpus" / "sub" / "b.txt").write_text("b")
    (root / "out-folder").symlink_to(outside, target_is_directory=True)
    (root / "out-file").symlink_to(outside / "secret.txt")
    (root / "relative-out").symlink_to(os.path.join("..", "outside"))
    (root / "inside").symlink_to(root / "corpus", target_is_directory=True)
    (root / "loop").symlink_to(root / "loop")
    return root, outside


@pytest.mark.parametrize("name", ["prose", "my-model_2.1", "a..b", "café", "Übung 1", "名前"])
def test_plain_names_pass(name):
    assert check_name(name, "model") == name and is_plain_name(name)


@pytest.mark.parametrize(
    "name, reason",
    [
        ("", "empty"),
        ("   ", "empty"),
        (None, "empty"),
        (".", "hidden"),
        ("..", "hidden"),
        (".env", "hidden"),
        (".git", "hidden"),
        ("/etc", "a path"),
        ("a/b", "a path"),
        ("a\\b", "a path"),
        ("../x", "a path"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        ("a\u200bb", "invisible"),
        ("a\u202eb", "invisible"),
        ("x" * 256, "longer than 255"),
        ("é" * 128, "longer than 255"),
    ],
)
def test_names_refused_say_why(name, reason):
    with pytest.raises(StudioError, match=reason) as caught:
        check_name(name, "model")
    assert "\n" not in str(caught.value) and not is_plain_name(name)


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_unicode_look_alikes_are_refused(name):
    with pytest.raises(StudioError, match="refused"):
        check_name(name, "corpus")


def test_decomposed_accents_are_not_look_alikes():
    assert check_name("cafe\u0301", "corpus") == "cafe\u0301"  # e + combining acute, as macOS stores it


def test_refusals_are_one_line_and_short():
    with pytest.raises(StudioError) as caught:
        check_name("a/" + "b\n" * 500, "corpus")
    message = str(caught.value)
    assert "\n" not in message and len(message) < 200 and message.startswith("corpus 'a/b\\n")


def test_confine_keeps_names_inside_the_root(tree):
    root, _ = tree
    assert confine(root, "corpus", "sub", "b.txt", what="file") == (root / "corpus" / "sub" / "b.txt").resolve()
    assert confine(root, "not-yet", what="run") == root.resolve() / "not-yet"  # need not exist
    assert confine(root, "inside", what="corpus") == (root / "corpus").resolve()  # a link within


@pytest.mark.parametrize(
    "names",
    [
        ("/etc",),
        ("..",),
        ("corpus", ".."),
        ("../outside",),
        ("out-folder",),
        ("out-file",),
        ("relative-out",),
        ("out-folder", "secret.txt"),
        ("loop",),
        ("",),
    ],
)
def test_confine_refuses_escapes(tree, names):
    root, outside = tree
    with pytest.raises(StudioError, match="refused") as caught:
        confine(root, *names, what="corpus")
    assert str(outside) not in str(caught.value)  # never says where a link led


def test_confine_refuses_an_absolute_path_inside_the_root_too(tree):
    root, _ = tree
    with pytest.raises(StudioError, match="a path"):
        confine(root, str(root / "corpus"), what="corpus")


def test_contain_takes_whole_paths_under_a_root(tree):
    root, outside = tree
    assert contain(root / "corpus" / "a.txt", [outside, root], "upload") == (root / "corpus" / "a.txt").resolve()
    for path in (
        outside / "secret.txt",
        root / "out-file",
        root / "corpus" / ".." / ".." / "outside",
        root / "loop",
        "/etc/passwd",
    ):
        with pytest.raises(StudioError, match="refused"):
            contain(path, [root], "upload")


def test_pick_takes_listed_names_only(tree):
    root, _ = tree
    listing = {"corpus": root / "corpus", "other": root / "other"}
    assert pick("corpus", listing, "corpus") == root / "corpus"
    with pytest.raises(StudioError, match="not found; pick one of: corpus, other"):
        pick("nothing", listing, "corpus")
    for value in ("/etc", str(root / "corpus"), "../corpus", "corpus/", "\uff43orpus", ".corpus", "", None, 3):
        with pytest.raises(StudioError, match="pick one of: corpus, other"):
            pick(value, listing, "corpus")
    with pytest.raises(StudioError, match="pick one of: none"):
        pick("corpus", {}, "corpus")


def test_escaping_links_names_links_relative_to_the_folder(tree):
    root, outside = tree
    corpus = root / "corpus"
    assert escaping_links(corpus, root) == []
    (corpus / "sub" / "leak.txt").symlink_to(outside / "secret.txt")
    (corpus / ".hidden-leak").symlink_to(outside, target_is_directory=True)
    (corpus / "broken").symlink_to(root / "gone")
    (root / "other").mkdir()
    (corpus / "sibling").symlink_to(root / "other", target_is_directory=True)  # inside the root
    assert escaping_links(corpus, root) == [".hidden-leak", "broken", os.path.join("sub", "leak.txt")]
    assert escaping_links(corpus, corpus) == [".hidden-leak", "broken", "sibling", os.path.join("sub", "leak.txt")]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=3))
def test_confine_never_returns_a_path_outside(tmp_path_factory, names):
    root = tmp_path_factory.getbasetemp() / "hypothesis-root"
    root.mkdir(exist_ok=True)
    try:
        target = confine(root, *names, what="name")
    except StudioError:
        return
    assert target.is_relative_to(root.resolve()) and target != root.resolve()
    assert all(is_plain_name(name) for name in names)
