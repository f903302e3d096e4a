"""``fleet`` against a real coordinator process: outputs, JSON and the exit statuses."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fleet_client.cli import main
from fleet_client.exits import (
    EXIT_CONFLICT,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNAUTHORIZED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)

from tests.support.served import Served, free_port


class Fleet:
    """Runs ``fleet`` in-process with the served coordinator's URL and token."""

    def __init__(self, served: Served, capsys: pytest.CaptureFixture[str]) -> None:
        self.served = served
        self.capsys = capsys
        self.outputs: list[str] = []

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        """Exit status, stdout and stderr of one command."""
        code = main([*argv, "--url", self.served.base_url])
        out, err = self.capsys.readouterr()
        self.outputs += [out, err]
        return code, out, err

    def json(self, *argv: str) -> Any:
        """The JSON a successful ``--json`` command wrote."""
        code, out, err = self(*argv, "--json")
        assert code == EXIT_OK, err
        return json.loads(out)


@pytest.fixture
def fleet(
    served: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Fleet]:
    """``fleet`` with ``FLEET_ADMIN_TOKEN`` set; checks afterwards that it never printed it."""
    monkeypatch.setenv("FLEET_ADMIN_TOKEN", served.admin_token)
    runner = Fleet(served, capsys)
    yield runner
    assert not any(served.admin_token in text for text in runner.outputs)


def test_enqueue_show_list_cancel_retry(fleet: Fleet) -> None:
    """A job's whole admin life through the CLI, with the statuses scripts rely on."""
    queue = f"cli{uuid.uuid4().hex[:8]}"
    code, out, _ = fleet(
        "jobs", "enqueue", "resize", "--payload", '{"w": 1}', "--queue", queue, "-q"
    )
    job_id = out.strip()
    assert code == EXIT_OK
    shown = fleet.json("jobs", "show", job_id)
    assert (shown["payload"], shown["queue"], shown["runs"]) == ({"w": 1}, queue, [])
    code, out, _ = fleet("jobs", "list", "--queue", queue)
    assert code == EXIT_OK
    assert job_id in out
    assert fleet.json("jobs", "cancel", job_id)["status"] == "cancelled"  # one id: an object
    code, _, err = fleet("jobs", "cancel", job_id)
    assert (code, "already_terminal" in err) == (EXIT_CONFLICT, True)
    assert fleet.json("jobs", "retry", job_id)["status"] == "queued"
    assert [j["id"] for j in fleet.json("jobs", "list", "--queue", queue, "--limit", "0")] == [
        job_id
    ]


def test_enqueue_options_reach_the_job(fleet: Fleet) -> None:
    """Priority, attempts, requires, run_after and a key become job fields."""
    key = uuid.uuid4().hex
    argv = (
        "jobs",
        "enqueue",
        "k",
        "--priority",
        "7",
        "--max-attempts",
        "5",
        "--require",
        "gpu=yes",
    )
    job = fleet.json(*argv, "--run-after", "2099-01-01T00:00:00Z", "--key", key)
    again = fleet.json(*argv, "--run-after", "2099-01-01T00:00:00Z", "--key", key)
    assert (job["priority"], job["max_attempts"], job["requires"]) == (7, 5, {"gpu": "yes"})
    assert (job["run_after"], again["id"]) == ("2099-01-01T00:00:00Z", job["id"])
    later = fleet.json("jobs", "enqueue", "k", "--run-after", "+1h")
    assert later["run_after"] > later["created_at"]


def test_unknown_ids_exit_3_and_bad_input_exits_1_or_2(fleet: Fleet) -> None:
    """404 is 3, a 422 from the coordinator 1, a command-line mistake 2."""
    assert fleet("jobs", "show", "no-such-job")[0] == EXIT_NOT_FOUND
    assert fleet("jobs", "enqueue", "k", "--max-attempts", "0")[0] == EXIT_REJECTED
    with pytest.raises(SystemExit) as caught:
        fleet("jobs", "enqueue", "k", "--payload", "[1]")
    assert caught.value.code == EXIT_USAGE
    assert fleet("jobs", "cancel")[0] == EXIT_USAGE  # neither ids nor a filter


def _fleet_queues_against(status: int, content_type: str, body: bytes, *extra: str) -> int:
    """``fleet queues`` against a server that answers every GET with this answer."""

    class Answering(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answering) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            return main(["queues", "--url", f"http://127.0.0.1:{server.server_port}", *extra])
        finally:
            server.shutdown()


def test_a_url_that_names_another_server_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """A web server that is not the coordinator answers 200 in HTML: a wrong ``--url``,
    the command-line mistake of status 2 (it was 1, "invalid input", which it is not)."""
    monkeypatch.setenv("FLEET_ADMIN_TOKEN", "a-token-long-enough-to-be-sent")
    page = b"<!doctype html><p>a web server</p>"
    assert _fleet_queues_against(200, "text/html", page) == EXIT_USAGE


@pytest.mark.parametrize(
    ("status", "content_type", "body"),
    [
        (404, "text/html", b"<p>File not found</p>"),
        (404, "application/json", b'{"detail": "Not Found"}'),  # another app, or a wrong prefix
        (405, "text/plain", b"Method Not Allowed"),
        (500, "text/html", b"<p>oops</p>"),
    ],
)
def test_an_error_not_in_the_coordinators_shape_is_a_wrong_url_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    status: int,
    content_type: str,
    body: bytes,
) -> None:
    """Another server's 404 read as "no such job" (3), its 500 as "a coordinator bug" (7)."""
    monkeypatch.setenv("FLEET_ADMIN_TOKEN", "a-token-long-enough-to-be-sent")
    assert _fleet_queues_against(status, content_type, body) == EXIT_USAGE
    assert "is the URL the coordinator's?" in capsys.readouterr().err


def test_an_unavailable_answer_without_the_shape_is_still_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A proxy's 502 page in front of a coordinator that is down: 6, not a wrong URL."""
    monkeypatch.setenv("FLEET_ADMIN_TOKEN", "a-token-long-enough-to-be-sent")
    code = _fleet_queues_against(502, "text/html", b"<p>Bad Gateway</p>", "--retry-seconds", "0.1")
    assert code == EXIT_UNAVAILABLE


def test_tokens_and_reachability_have_their_own_statuses(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No token is 2, a refused token 5, a coordinator nobody answers for 6."""
    monkeypatch.setenv("FLEET_ADMIN_TOKEN", "wrong-token")
    assert fleet("queues")[0] == EXIT_UNAUTHORIZED
    code = main(["queues", "--url", f"http://127.0.0.1:{free_port()}", "--retry-seconds", "0.2"])
    assert code == EXIT_UNAVAILABLE
    monkeypatch.delenv("FLEET_ADMIN_TOKEN")
    code, _, err = fleet("queues")
    assert (code, "FLEET_ADMIN_TOKEN" in err) == (EXIT_USAGE, True)


def test_agents_add_prints_the_agent_token_once_and_drain_rm_work(fleet: Fleet) -> None:
    """``agents add`` answers the new agent's token; drain and rm act on its id."""
    created = fleet.json(
        "agents", "add", f"a{uuid.uuid4().hex[:6]}", "--capacity", "3", "--label", "os=linux"
    )
    agent_id = created["agent"]["id"]
    assert created["token"].startswith("fa.")
    assert created["agent"]["labels"] == {"os": "linux"}
    assert fleet.json("agents", "drain", agent_id)["draining"] is True
    assert fleet("agents", "rm", agent_id)[0] == EXIT_OK
    assert agent_id not in [a["id"] for a in fleet.json("agents")]


def test_enqueue_file_reports_invalid_lines_and_reruns_with_keys_enqueue_nothing_twice(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Valid lines go in batches, invalid ones are reported by number, a keyed re-run adds none."""
    queue = f"file{uuid.uuid4().hex[:8]}"
    lines = [json.dumps({"kind": "f", "queue": queue, "payload": {"i": i}}) for i in range(25)]
    lines[3] = "{not json"
    lines[7] = json.dumps({"kind": "", "queue": queue})
    lines.insert(10, "")
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    argv = ("jobs", "enqueue-file", str(path), "--key-prefix", f"{queue}:", "--batch-size", "10")
    code, out, _ = fleet(*argv, "--json")
    summary = json.loads(out)
    assert code == EXIT_REJECTED
    assert (summary["lines"], summary["enqueued"], summary["invalid"]) == (25, 23, 2)
    assert [p.split(":")[0] for p in summary["problems"]] == ["line 4", "line 8"]
    fleet(*argv)
    [entry] = [q for q in fleet.json("queues") if q["queue"] == queue]
    assert entry["queued"] == 23


def test_enqueue_file_counts_a_refused_batch_and_goes_on(fleet: Fleet, tmp_path: Path) -> None:
    """A batch the coordinator refuses (422) is reported by line range; later batches still go."""
    queue = f"refused{uuid.uuid4().hex[:8]}"
    lines: list[dict[str, Any]] = [{"kind": "f", "queue": queue} for _ in range(6)]
    lines[1]["max_attempts"] = 0  # valid JSON for the client, refused by the coordinator
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, out, _ = fleet("jobs", "enqueue-file", str(path), "--batch-size", "3", "--json")
    summary = json.loads(out)
    assert (code, summary["enqueued"], summary["rejected"]) == (EXIT_REJECTED, 3, 3)
    assert summary["problems"][0].startswith("lines 1-3: refused: 422")
    # The job the coordinator names by its place in the batch, named by its line.
    assert "(line 2: max_attempts: " in summary["problems"][0]


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"payload": {"x": "y" * 300_000}}, "payload_too_large: line 5: payload is "),
        ({"idempotency_key": "twice"}, ": line 5: idempotency_key repeats that of line 4"),
    ],
)
def test_enqueue_file_names_the_line_of_the_job_a_batch_was_refused_for(
    fleet: Fleet, tmp_path: Path, bad: dict[str, Any], named: str
) -> None:
    """A refusal the coordinator gives by batch place (``jobs[1]``) reads as the file's line."""
    queue = f"named{uuid.uuid4().hex[:8]}"
    lines: list[dict[str, Any]] = [{"kind": "f", "queue": queue} for _ in range(6)]
    lines[3]["idempotency_key"] = "twice"
    lines[4].update(bad)
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, out, _ = fleet("jobs", "enqueue-file", str(path), "--batch-size", "3", "--json")
    summary = json.loads(out)
    assert (code, summary["enqueued"], summary["rejected"]) == (EXIT_REJECTED, 3, 3)
    [problem] = summary["problems"]
    assert problem.startswith("lines 4-6: refused: ")
    assert named in problem


def _procsub_lines(queue: str, count: int) -> bytes:
    line = json.dumps({"kind": "x", "queue": queue}).encode() + b"\n"
    return line * count


def test_enqueue_file_reads_a_pipe_once(fleet: Fleet) -> None:
    """``<(…)`` is a pipe at /dev/fd/N: its jobs are read once, not counted away first."""
    queue = f"procsub{uuid.uuid4().hex[:8]}"
    read_end, write_end = os.pipe()
    os.write(write_end, _procsub_lines(queue, 3))
    os.close(write_end)
    try:
        code, out, _ = fleet("jobs", "enqueue-file", f"/dev/fd/{read_end}", "--json")
    finally:
        os.close(read_end)
    summary = json.loads(out)
    assert (code, summary["lines"], summary["enqueued"]) == (EXIT_OK, 3, 3)


def test_enqueue_file_reads_a_fifo_and_ends_when_its_writer_closes(
    fleet: Fleet, tmp_path: Path
) -> None:
    """A named FIFO is opened once: the command ends with the writer, every job sent."""
    queue = f"fifo{uuid.uuid4().hex[:8]}"
    fifo = tmp_path / "jobs.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(_procsub_lines(queue, 3),))
    writer.start()
    result: list[tuple[int, str, str]] = []
    runner = threading.Thread(
        target=lambda: result.append(fleet("jobs", "enqueue-file", str(fifo), "--json"))
    )
    runner.start()
    runner.join(timeout=20)
    if runner.is_alive():  # the old code waits on a second open: give it a writer, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        runner.join(timeout=20)
    writer.join(timeout=5)
    code, out, _ = result[0]
    summary = json.loads(out)
    assert (code, summary["lines"], summary["enqueued"]) == (EXIT_OK, 3, 3)


def test_a_token_with_a_line_ending_works_and_one_no_header_can_carry_exits_2(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``$TOK\\r`` is the token; ``tökén`` is refused at once, exit 2, and never printed."""
    monkeypatch.setenv("FLEET_ADMIN_TOKEN", fleet.served.admin_token + "\r")
    assert fleet("queues", "--retry-seconds", "0.2")[0] == EXIT_OK
    bad = "tökén-" + fleet.served.admin_token
    monkeypatch.setenv("FLEET_ADMIN_TOKEN", bad)
    code, out, err = fleet("queues", "--retry-seconds", "0.2")
    assert (code, bad in out + err, "tökén" in out + err) == (EXIT_USAGE, False, False)


def _fleet_process(*argv: str, token: str = "t0ken") -> subprocess.CompletedProcess[str]:
    """``fleet`` in a process of its own: what a shell sees on its stdout and stderr."""
    env = {**os.environ, "FLEET_ADMIN_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "fleet_client.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "argv", [("jobs", "list", "--json"), ("jobs", "enqueue", "k", "-q", "--key", "k")]
)
def test_retry_lines_go_to_stderr_and_stdout_holds_only_the_result(argv: tuple[str, ...]) -> None:
    """Retrying an unreachable coordinator writes its lines to stderr: stdout stays empty."""
    url = f"http://127.0.0.1:{free_port()}"
    done = _fleet_process(*argv, "--url", url, "--retry-seconds", "0.5")
    assert (done.returncode, done.stdout) == (EXIT_UNAVAILABLE, "")
    assert "retry 1 in" in done.stderr


@pytest.mark.parametrize(
    "payload", ['{"a": NaN}', '{"b": Infinity}', '{"c": [-Infinity]}', '{"s": "\\ud800"}']
)
def test_a_payload_without_a_json_form_is_a_command_line_mistake(
    fleet: Fleet, payload: str
) -> None:
    """NaN, ±Infinity (Python's json reads them) and a lone surrogate exit 2, nothing sent."""
    with pytest.raises(SystemExit) as caught:
        fleet("jobs", "enqueue", "k", "--payload", payload)
    assert caught.value.code == EXIT_USAGE


def test_enqueue_file_reports_a_line_without_a_json_form_and_sends_the_others(
    fleet: Fleet, tmp_path: Path
) -> None:
    """A lone surrogate or a NaN makes its line invalid; the rest of the file goes."""
    queue = f"nojson{uuid.uuid4().hex[:8]}"
    good = json.dumps({"kind": "x", "queue": queue})
    surrogate = '{"kind": "x", "payload": {"s": "\\ud800"}}'
    lines = [good, surrogate, good, '{"kind": "x", "payload": {"n": NaN}}']
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = fleet("jobs", "enqueue-file", str(path), "--json")
    summary = json.loads(out)
    assert (code, summary["enqueued"], summary["invalid"]) == (EXIT_REJECTED, 2, 2)
    assert [p.split(":")[0] for p in summary["problems"]] == ["line 2", "line 4"]


def test_cancel_and_retry_try_every_id_and_exit_with_the_worst_outcome(fleet: Fleet) -> None:
    """An unknown or ended job is reported in its place; the ids after it are still acted on."""
    queue = f"each{uuid.uuid4().hex[:8]}"
    ids = [fleet("jobs", "enqueue", "k", "--queue", queue, "-q")[1].strip() for _ in range(3)]
    a, b, c = ids
    code, out, err = fleet("jobs", "cancel", a, "nope", c, "--json")
    assert code == EXIT_NOT_FOUND
    assert [(j["id"], j["status"]) for j in json.loads(out)] == [
        (a, "cancelled"),
        (c, "cancelled"),
    ]
    assert "nope" in err
    code, out, err = fleet("jobs", "cancel", a, b, "--json")  # a is already cancelled
    assert (code, [j["id"] for j in json.loads(out)]) == (EXIT_CONFLICT, [b])
    assert a in err
    code, out, _ = fleet("jobs", "retry", "nope", *ids, "--json")
    assert (code, sorted(j["id"] for j in json.loads(out))) == (EXIT_NOT_FOUND, sorted(ids))


def test_enqueue_file_that_cannot_be_opened_is_a_command_line_mistake(
    fleet: Fleet, tmp_path: Path
) -> None:
    """No such file, or a directory: a message and exit 2, no traceback."""
    code, _, err = fleet("jobs", "enqueue-file", str(tmp_path / "missing.jsonl"))
    assert (code, "cannot read" in err) == (EXIT_USAGE, True)
    code, _, err = fleet("jobs", "enqueue-file", str(tmp_path))
    assert (code, "cannot read" in err) == (EXIT_USAGE, True)


def test_enqueue_file_reports_a_line_not_utf8_and_accepts_a_bom(
    fleet: Fleet, tmp_path: Path
) -> None:
    """A BOM before line 1 is not part of it; a line not UTF-8 is invalid, the others go."""
    queue = f"bytes{uuid.uuid4().hex[:8]}"
    good = json.dumps({"kind": "x", "queue": queue}).encode()
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\n" + b'{"kind": "\xff"}\n' + good + b"\n")
    code, out, _ = fleet("jobs", "enqueue-file", str(path), "--json")
    summary = json.loads(out)
    assert (code, summary["enqueued"], summary["invalid"]) == (EXIT_REJECTED, 2, 1)
    assert summary["problems"] == ["line 2: not UTF-8 (byte 11)"]


def test_a_url_that_is_not_http_exits_2_at_once_and_credentials_are_not_shown(
    fleet: Fleet,
) -> None:
    """``--url notaurl`` is a command-line mistake, not an unreachable coordinator."""
    for url in ("notaurl", "ftp://x"):
        started = time.monotonic()
        code = main(["queues", "--url", url])
        _, err = fleet.capsys.readouterr()
        assert (code, "not an http(s) URL" in err) == (EXIT_USAGE, True)
        assert time.monotonic() - started < 2
    url = f"http://user:PW-s3cret@127.0.0.1:{free_port()}"
    code = main(["queues", "--url", url, "--retry-seconds", "0.2"])
    _, err = fleet.capsys.readouterr()
    assert (code, "PW-s3cret" in err, "***@127.0.0.1" in err) == (EXIT_UNAVAILABLE, False, True)


def test_a_refused_field_is_named(fleet: Fleet) -> None:
    """A 422 says which field the coordinator refused, not only "the request is invalid"."""
    code, _, err = fleet("jobs", "enqueue", "k", "--max-attempts", "0")
    assert (code, "body.max_attempts" in err.replace("\n", "")) == (EXIT_REJECTED, True)


def _waits_for_a_fifo_partner(pid: int) -> bool:
    """Whether a thread of ``pid`` is blocked in ``open()`` of a FIFO no writer opened."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            if (task / "wchan").read_text() == "wait_for_partner":
                return True
    return False


def test_one_ctrl_c_stops_enqueue_file_waiting_on_a_fifo(tmp_path: Path) -> None:
    """Blocked opening a FIFO no writer opened, ``fleet`` ends at the first SIGINT (130)."""
    fifo = tmp_path / "jobs.fifo"
    os.mkfifo(fifo)
    process = subprocess.Popen(
        [sys.executable, "-m", "fleet_client.cli", "jobs", "enqueue-file", str(fifo)],
        env={**os.environ, "FLEET_ADMIN_TOKEN": "t0ken"},
        # A child of a shell's background job inherits an ignored SIGINT: a terminal's.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Signalled once it is blocked opening the FIFO (the kernel's wait for a writer),
        # not after a guessed delay.
        deadline = time.monotonic() + 30
        while not _waits_for_a_fifo_partner(process.pid):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "fleet never blocked opening the FIFO"
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 130
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_messages_to_a_file_are_not_cut_into_80_columns(fleet: Fleet) -> None:
    """stderr redirected: each message is one line, whatever its length."""
    url = f"http://127.0.0.1:{free_port()}/" + "p" * 80
    code = main(["queues", "--url", url, "--retry-seconds", "0.05"])
    _, err = fleet.capsys.readouterr()
    assert code == EXIT_UNAVAILABLE
    assert [line for line in err.splitlines() if line.startswith("fleet: error:")] == [
        err.strip().splitlines()[-1]
    ]
    assert "p" * 80 in err


_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""What a terminal acts on (a newline aside, which every output has)."""


def test_other_peoples_text_is_shown_not_acted_on_by_the_terminal(fleet: Fleet) -> None:
    """A job kind and an agent's error holding escape sequences, a C1 control, a bidi
    override and rich markup: every table shows them escaped and literally, and --json
    gives the very same strings back. (``[/bold]`` in a kind made ``fleet jobs list``
    fail with a traceback; ``ESC [2J`` in an error cleared the operator's screen.)"""
    queue = f"esc-{uuid.uuid4().hex[:8]}"
    kind = "k\x1b[2J[/bold] [link=https://example.invalid]x[/link]\u202e"
    error = "boom\x1b]0;title\x07\x1b[H\x9b31m"
    served = fleet.served
    admin = served.admin_headers
    agent = httpx.post(
        f"{served.base_url}/v1/agents", json={"name": "esc", "queues": [queue]}, headers=admin
    ).json()
    job = httpx.post(
        f"{served.base_url}/v1/jobs", json={"kind": kind, "queue": queue}, headers=admin
    ).json()
    headers = {"Authorization": f"Bearer {agent['token']}"}
    claimed = httpx.post(f"{served.base_url}/v1/claims", json={}, headers=headers).json()
    assert [lease["job"]["id"] for lease in claimed["leases"]] == [job["id"]]
    failed = httpx.post(
        f"{served.base_url}/v1/jobs/{job['id']}/fail",
        json={"epoch": 1, "error": error, "retryable": False},
        headers=headers,
    )
    assert failed.status_code == 200, failed.text
    for argv in (("jobs", "list", "--queue", queue), ("jobs", "show", job["id"])):
        code, out, err = fleet(*argv)
        assert code == EXIT_OK, err
        assert not _CONTROLS.search(out), out
        assert "[/bold] [link=https://example.invalid]x[/link]" in out
        assert "k\\x1b[2J" in out
        assert "\\u202e" in out
    _, shown, _ = fleet("jobs", "show", job["id"])
    assert "boom\\x1b]0;title\\x07\\x1b[H\\x9b31m" in shown
    for argv in (("jobs", "list", "--queue", queue), ("jobs", "show", job["id"])):
        code, out, err = fleet(*argv, "--json")
        assert code == EXIT_OK, err
        assert not _CONTROLS.search(out), out
        listed = json.loads(out)
        got = listed[0] if isinstance(listed, list) else listed
        assert got["kind"] == kind
    assert fleet.json("jobs", "show", job["id"])["last_error"] == error


def test_a_message_from_the_server_is_shown_not_acted_on_by_the_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error answer whose code and message hold escape sequences: escaped on stderr."""
    monkeypatch.setenv("FLEET_ADMIN_TOKEN", "a-token-long-enough-to-be-sent")
    refusal = {"error": {"code": "x\x1b[31m", "message": "\x1b[2Jgone\x9b", "details": {}}}
    code = _fleet_queues_against(422, "application/json", json.dumps(refusal).encode())
    _, err = capsys.readouterr()
    assert code == EXIT_REJECTED
    assert not _CONTROLS.search(err), err
    assert "\\x1b[2Jgone\\x9b" in err
