"""The web studio trusts no path: corpora, models, run folders and uploads are names from
the studio's own lists, and exposing the server is a deliberate act.

A real server (``studio web --host 0.0.0.0 --auth-file ... --allow-training``) is
called through ``gradio_client`` with every kind of path a client could send: ``/etc``,
``..``, absolute paths, links out of a root, Unicode look-alikes.  Each call must be
refused with one line, and a canary file outside the studio's folders must not appear
in any answer or in any file the server wrote.  The helpers behind the Train tab are
also called in-process for the limits on uploads and run names.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError, AuthenticationError  # noqa: E402

from studio.errors import StudioError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVER_START_S = 120
USER, PASSWORD = "editor", "correct horse battery"
CANARY = f"CANARY-{secrets.token_hex(8)}"
PLAY = "ROMEO: But soft! what light through yonder window breaks?\nJULIET: O Romeo, Romeo!\n" * 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(work: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "STUDIO_MODELS"}
    # the server's temporary files (request outputs, Gradio's uploads and cache) stay in
    # work/tmp, so the canary scan sees everything the server wrote
    env.update(
        TMPDIR=str(work / "tmp"),
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        MPLBACKEND="Agg",
        PYTHONPATH=str(ROOT),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    return env


def start_server(work: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    """``studio web --host 0.0.0.0 FLAGS`` in ``work``; returns (process, loopback URL)
    once the server answers (401 counts: it is up)."""
    port = free_port()
    (work / "tmp").mkdir(exist_ok=True)
    log = open(work / "server.log", "w")  # noqa: SIM115 (the server writes to it until the fixture ends)
    server = subprocess.Popen(
        [sys.executable, "-m", "studio", "web", "--host", "0.0.0.0", "--port", str(port), *flags],
        cwd=work,
        env=server_env(work),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + SERVER_START_S
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return server, url
        except urllib.error.HTTPError:
            return server, url
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                pytest.fail("the server did not start: " + (work / "server.log").read_text()[-3000:])
            time.sleep(0.3)


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def studio_folder(base: Path) -> tuple[Path, Path]:
    """(work, outside): a studio working folder and, beside it, a folder with the canary.

    work/corpora/text        a corpus (with a binary file the trainer skips)
    work/corpora/linked      a corpus holding a link to the canary
    work/corpora/leak        a link to the outside folder
    work/export/leak         a link to a bundle outside, whose card holds the canary
    """
    work, outside = base / "work", base / "outside"
    (work / "corpora" / "text" / "sub").mkdir(parents=True)
    (work / "corpora" / "text" / "play.txt").write_text(PLAY)
    (work / "corpora" / "text" / "sub" / "blob.bin").write_bytes(b"\x00\x01binary" * 50)
    (work / "corpora" / "linked").mkdir()
    (work / "corpora" / "linked" / "play.txt").write_text(PLAY)
    (outside / "fakebundle").mkdir(parents=True)
    (outside / "secret.txt").write_text(f"{CANARY}\n" * 400)
    card = {
        "name": CANARY,
        "domain": {"name": "chars", "secret": CANARY},
        "graphs": {"fp32": "model.onnx"},
        "io": {},
        "corpus": {"path": str(outside)},
    }
    (outside / "fakebundle" / "card.json").write_text(json.dumps(card))
    (outside / "fakebundle" / "model.onnx").write_text(CANARY)
    (work / "corpora" / "linked" / "secret.txt").symlink_to(outside / "secret.txt")
    (work / "corpora" / "leak").symlink_to(outside, target_is_directory=True)
    (work / "export").mkdir()
    (work / "export" / "leak").symlink_to(outside / "fakebundle", target_is_directory=True)
    return work, outside


def written_files(work: Path) -> dict[str, int]:
    """Every regular file the server may have written (not the test's own fixtures), by size."""
    found = {}
    for folder in ("runs", "export", "tmp"):
        for parent, _, files in os.walk(work / folder):
            for name in files:
                path = Path(parent) / name
                if not path.is_symlink():
                    found[str(path.relative_to(work))] = path.stat().st_size
    return found


def assert_no_canary(work: Path, *answers) -> None:
    """The canary is in no answer and in no file under ``work`` (links not followed)."""
    for answer in answers:
        assert CANARY not in json.dumps(answer, default=str), answer
    for parent, _, files in os.walk(work):
        for name in files:
            path = Path(parent) / name
            if not path.is_symlink():
                assert CANARY.encode() not in path.read_bytes(), f"the canary leaked into {path}"


@pytest.fixture(scope="module")
def exposed():
    """(client, url, work, outside): a server on every interface behind a password, with
    training allowed, and an authenticated client."""
    base = Path(tempfile.mkdtemp(prefix="studio-web-security-"))
    work, outside = studio_folder(base)
    (base / "auth.txt").write_text(f"{USER}:{PASSWORD}\n")
    server, url = start_server(work, "--auth-file", str(base / "auth.txt"), "--allow-training")
    try:
        client = Client(
            url,
            auth=(USER, PASSWORD),
            verbose=False,
            download_files=str(base / "downloads"),
            httpx_kwargs={"timeout": 120},
        )
        yield client, url, work, outside
    finally:
        stop_server(server)
        shutil.rmtree(base, ignore_errors=True)


def refusal(client: Client, **kwargs) -> str:
    """The one-line message a refused call comes back with."""
    with pytest.raises(AppError) as caught:
        client.predict(**kwargs)
    message = caught.value.message
    assert message and "\n" not in message and "Traceback" not in message, message
    return message


def train_args(corpus: str, name: str = "leaky", **changes) -> dict:
    args = dict(
        corpus=corpus,
        uploads=None,
        name=name,
        domain="chars",
        hidden_size=16,
        layers=1,
        seq_len=16,
        batch_size=4,
        max_steps=2,
        max_minutes=0,
        eval_every=2,
        api_name="/train",
    )
    args.update(changes)
    return args


# --- exposure ---------------------------------------------------------------------


def test_an_unauthenticated_client_is_turned_away(exposed):
    _, url, _, _ = exposed
    with pytest.raises(AuthenticationError):
        Client(url, verbose=False)
    with pytest.raises((AuthenticationError, ValueError), match="Could not login"):
        Client(url, auth=(USER, "wrong"), verbose=False)  # Gradio answers 400 to a wrong password
    for path in ("config", "gradio_api/info"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(url + path, timeout=10)
        assert caught.value.code == 401, path


def test_exposed_without_credentials_refuses_to_start(tmp_path):
    for flags, message in [
        ((), "--auth USER:PASSWORD"),
        (("--auth", "nopassword"), "give USER:PASSWORD"),
        (("--auth", "a:b", "--no-auth"), "contradicts"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "studio", "web", "--host", "0.0.0.0", *flags],
            cwd=tmp_path,
            env=server_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
        assert message in result.stderr


def test_a_port_that_cannot_be_served_is_one_line_before_the_app_is_built(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        for flags, message in [
            (("--port", str(port)), f"cannot serve on 127.0.0.1:{port} (Address already in use): pick another --port"),
            (("--port", "99999999"), "--port must be 1 to 65535 (got 99999999)"),
        ]:
            result = subprocess.run(
                [sys.executable, "-m", "studio", "web", *flags],
                cwd=tmp_path,
                env=server_env(tmp_path),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 1 and result.stdout == ""
            assert result.stderr == f"error: {message}\n", result.stderr


def test_no_auth_warns_and_turns_training_off(tmp_path):
    work, _ = studio_folder(tmp_path)
    server, url = start_server(work, "--no-auth")
    try:
        endpoints = Client(url, verbose=False).view_api(print_info=False, return_format="dict")
        names = set(endpoints["named_endpoints"])
        assert {"/write", "/compose", "/models", "/model_card"} <= names
        assert not {"/train", "/cancel_training"} & names
    finally:
        stop_server(server)
    assert "warning: serving on 0.0.0.0 without a password" in (work / "server.log").read_text()


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.5", False),
        ("studio.example", False),
    ],
)
def test_loopback_hosts(host, loopback):
    from web.serving import is_loopback

    assert is_loopback(host) is loopback


def test_exposure_follows_the_flags(tmp_path):
    from web.serving import AUTH_ENV, decide

    assert decide("127.0.0.1", environ={}).training and not decide("127.0.0.1", environ={}).credentials
    with pytest.raises(StudioError, match="--auth USER:PASSWORD"):
        decide("0.0.0.0", environ={})
    with pytest.raises(StudioError, match="--auth USER:PASSWORD"):
        decide("0.0.0.0", allow_training=True, environ={})
    exposed = decide("0.0.0.0", auth=["ann:pass:word"], environ={})
    assert exposed.credentials == (("ann", "pass:word"),) and not exposed.training and exposed.warning is None
    assert decide("0.0.0.0", auth=["ann:pw"], allow_training=True, environ={}).training
    open_server = decide("0.0.0.0", no_auth=True, environ={})
    assert open_server.credentials == () and not open_server.training
    assert open_server.warning.startswith("warning: serving on 0.0.0.0 without a password")
    (tmp_path / "auth").write_text("ann:one\n\nbob:two words\n")
    from_file = decide("::", auth_file=tmp_path / "auth", environ={AUTH_ENV: "cy:three"})
    assert from_file.credentials == (("cy", "three"), ("ann", "one"), ("bob", "two words"))
    for bad, message in [
        (dict(auth=["nocolon"]), "give USER:PASSWORD"),
        (dict(auth=[":pw"]), "give USER:PASSWORD"),
        (dict(auth=["ann:"]), "give USER:PASSWORD"),
        (dict(auth_file=tmp_path / "missing"), "cannot read the auth file"),
        (dict(auth=["ann:pw"], no_auth=True), "contradicts"),
    ]:
        with pytest.raises(StudioError, match=message) as caught:
            decide("0.0.0.0", environ={}, **bad)
        assert "pw" not in str(caught.value).replace("PASSWORD", "")  # never repeats a password


# --- training sources ---------------------------------------------------------------


def test_train_refuses_every_path_and_reads_nothing(exposed):
    client, _, work, outside = exposed
    before = written_files(work)
    cases = {
        "/etc": "it is a path",
        str(outside): "it is a path",  # an absolute path inside the machine
        str(work / "corpora" / "text"): "it is a path",  # even to a listed corpus
        "../outside": "it is a path",
        "text/../../outside": "it is a path",
        "..": "hidden names and '..'",
        "corpora": "not found",
        "leak": "not found",  # corpora/leak is a link out of the corpus root: not listed
        "linked": "secret.txt link outside its corpus folder",  # a listed corpus with a link out
        "\uff0e\uff0e\uff0foutside": "look-alike",  # fullwidth '../outside'
        "\u2024\u2024": "look-alike",  # one-dot leaders
        "text\u2215..": "it is a path",  # division slash
    }
    answers = []
    for corpus, reason in cases.items():
        message = refusal(client, **train_args(corpus))
        assert reason in message, (corpus, message)
        assert str(outside / "secret.txt") not in message and "/etc/" not in message
        answers.append(message)
    # uploads beside a path: the path is still refused, and nothing is copied
    message = refusal(client, **train_args("/etc", uploads=[]))
    assert "it is a path" in message
    assert written_files(work) == before, "a refused call wrote files"
    assert not (work / "runs").exists() and not (work / "export" / "leaky").exists()
    assert_no_canary(work, *answers)


def test_a_listed_corpus_trains_and_names_files_relative_to_it(exposed):
    client, _, work, _ = exposed
    status, plot, log, command = client.predict(**train_args("text", name="control"))
    assert "control: done, exported to export/control" in status, (status, log)
    assert command == (
        "studio train corpora/text --name control --runs-dir runs --out export/control "
        "--quiet --hidden-size 16 --layers 1 --seq-len 16 --batch-size 4 --max-steps 2 "
        "--eval-every 2 --domain chars"
    )
    assert "skipped 1 binary or non-UTF-8 files: sub/blob.bin" in log, log
    for shown in (status, log, command):
        assert str(work) not in shown and str(work.resolve()) not in shown
    card = json.loads((work / "export" / "control" / "card.json").read_text())
    assert card["corpus"]["path"] == "corpora/text"
    assert "control" in [row[0] for row in client.predict(api_name="/models")["data"]]
    assert_no_canary(work, status, log, command)


# --- models -------------------------------------------------------------------------

MODEL_ENDPOINTS = {
    "/write": dict(
        prime="RO",
        temperature=0.8,
        top_k=0,
        top_p=1.0,
        repetition_penalty=1.0,
        beams=1,
        seed=1,
        length=5,
        stop="",
        view="auto",
        confidence=False,
    ),
    "/compose": dict(primer=None, tempo=100, bars=1, key="(any)", temperature=1.0, beams=1, seed=1),
    "/handwrite": dict(text="hi", style="none", bias=1.0, seed=1, stroke_width=2.0, color="#000000"),
    "/inspect": dict(text="abc", cell=0),
    "/model_card": {},
}


def test_every_model_endpoint_refuses_paths(exposed):
    client, url, work, outside = exposed
    before = written_files(work)
    cases = {
        "/etc": "it is a path",
        str(outside / "fakebundle"): "it is a path",  # a folder with a card.json, outside
        str(ROOT / "export" / "prose"): "it is a path",  # an absolute path to a real bundle
        "../outside/fakebundle": "it is a path",
        "export/prose": "it is a path",
        "prose/../prose": "it is a path",
        "leak": "not found",  # export/leak is a link out of its root: not listed
        "..": "hidden names",
        "\uff50rose": "look-alike",  # a fullwidth 'p'
        "\u2024\u2024\uff0foutside": "look-alike",
    }
    answers = []
    for endpoint, args in MODEL_ENDPOINTS.items():
        for model, reason in cases.items():
            message = refusal(client, model=model, api_name=endpoint, **args)
            assert reason in message and "pick one of:" in message, (endpoint, model, message)
            answers.append(message)
    table = client.predict(api_name="/models")
    names = [row[0] for row in table["data"]]
    assert "prose" in names and "leak" not in names
    assert not any(str(work) in str(row[-1]) or str(ROOT) in str(row[-1]) for row in table["data"])
    import httpx  # Gradio's file route serves only what it made or was given, not the server's files

    for path in (outside / "secret.txt", work / "corpora" / "linked" / "secret.txt"):
        served = httpx.get(f"{url}gradio_api/file={path}", cookies=client.cookies, timeout=30)
        assert served.status_code == 403 and CANARY not in served.text
    assert written_files(work) == before, "a refused call wrote files"
    assert_no_canary(work, table, *answers)


def test_a_listed_model_still_answers(exposed):
    client, _, work, _ = exposed
    # (a card whose corpus has a "path" would be taken for a file by gradio_client)
    card = client.predict(model="handwriting", api_name="/model_card")
    assert card["domain"]["name"] == "strokes"
    text, *_ = client.predict(model="prose", api_name="/write", **MODEL_ENDPOINTS["/write"])
    assert text.startswith("RO") and len(text) > 2
    assert_no_canary(work, card, text)


# --- in-process: uploads, run names, the training switch ----------------------------


@pytest.fixture
def jobs(tmp_path, monkeypatch):
    """TrainingJobs in tmp_path/work, with Gradio's upload folder at tmp_path/uploads."""
    from web.training import TrainingJobs

    work, outside = studio_folder(tmp_path)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    (tmp_path / "uploads").mkdir()
    return TrainingJobs(work), work, outside


def test_uploads_are_capped_and_must_come_from_the_upload_folder(jobs, tmp_path):
    from web.training import MAX_UPLOAD_BYTES, MAX_UPLOAD_FILES

    jobs, work, outside = jobs
    uploads = tmp_path / "uploads"
    many = []
    for index in range(MAX_UPLOAD_FILES + 1):
        (uploads / f"part{index}.txt").write_text("x")
        many.append(str(uploads / f"part{index}.txt"))
    (uploads / "big.txt").write_bytes(b"x" * (MAX_UPLOAD_BYTES + 1))
    (uploads / ".hidden").write_text("x")
    (uploads / "sub").mkdir()
    (uploads / "sub" / "part0.txt").write_text("x")
    (uploads / "link.txt").symlink_to(outside / "secret.txt")
    cases = [
        (many, f"at most {MAX_UPLOAD_FILES} files"),
        ([str(uploads / "big.txt")], "capped at 20 MB"),
        ([str(outside / "secret.txt")], "upload 'secret.txt' refused"),
        ([str(uploads / "link.txt")], "upload 'link.txt' refused"),
        ([str(uploads / ".." / "outside" / "secret.txt")], "refused"),
        ([str(uploads / ".hidden")], "hidden names"),
        ([str(uploads / "part0.txt"), str(uploads / "sub" / "part0.txt")], "same name"),
    ]
    for files, message in cases:
        with pytest.raises(StudioError, match=message):
            jobs.corpus_from_uploads("upload-test", files)
    assert not (work / "runs").exists()
    corpus = jobs.corpus_from_uploads("upload-test", many[:3])
    assert sorted(p.name for p in corpus.folder.iterdir()) == ["README.md", "part0.txt", "part1.txt", "part2.txt"]
    assert corpus.argument == "_uploads/upload-test"


def test_run_names_and_folders_are_confined(jobs):
    from web.training import make_train

    jobs, work, outside = jobs
    (work / "runs").mkdir()
    (work / "runs" / "escape").symlink_to(outside, target_is_directory=True)
    (work / "export" / "elsewhere").symlink_to(outside, target_is_directory=True)
    train = make_train(jobs)
    for name, message in [
        ("../up", "give the model a name"),
        (".hidden", "give the model a name"),
        ("a/b", "give the model a name"),
        ("", "give the model a name"),
        ("escape", "run 'escape' refused"),
        ("elsewhere", "model 'elsewhere' refused"),
    ]:
        with pytest.raises(StudioError, match=message):  # the endpoint turns it into one gr.Error
            next(train("text", None, name, "chars", 16, 1, 16, 4, 2, 0, 2))
    assert jobs.current is None and sorted(os.listdir(outside)) == ["fakebundle", "secret.txt"]


def test_listed_corpora_leave_out_links_hidden_and_look_alike_names(jobs):
    jobs, work, _ = jobs
    (work / "corpora" / ".hidden").mkdir()
    (work / "corpora" / "\uff0e\uff0e").mkdir()
    (work / "corpora" / "inner-link").symlink_to(work / "corpora" / "text", target_is_directory=True)
    names = list(jobs.corpora())
    assert {"text", "linked", "inner-link"} <= set(names)
    assert not {"leak", ".hidden", "\uff0e\uff0e"} & set(names)
    assert jobs.corpora()["inner-link"].folder == (work / "corpora" / "text").resolve()


def test_the_app_without_training_has_no_train_endpoint():
    from web.app import build_app

    def endpoints(demo):
        return {fn.api_name for fn in demo.fns.values() if fn.api_name}

    assert {"train", "cancel_training"} <= endpoints(build_app())
    assert not {"train", "cancel_training"} & endpoints(build_app(training_on=False))
