"""The HTTP judge against misbehaving servers on 127.0.0.1: one deadline per request however slowly the
reply drips, a size cap on replies, redirects refused without the key or prompt ever reaching the other
address, and every failure one line naming the URL. The judge against a real model's replies is in
tests/test_judges.py."""
from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click
import pytest
from click.testing import CliRunner

from veripo.cli import main_guard
from veripo.verify.judges import JudgeError, make_judge
from veripo.verify.judges.openai_http import MAX_REPLY_BYTES

TEMPLATE = "Question: {question}\nReasoning: {reasoning}\nAnswer: {answer}\nReply CONSISTENT or INCONSISTENT."
TEXT = "<think>two squares move, so the answer is 2.</think><answer>2</answer>"
DRIP_S = 0.5  # the slow server's pause between bytes: every single read finishes well inside timeout_s


def spec(url: str, **over) -> dict:
    base = {"backend": "http", "model": "judge-7b", "url": url, "api_key_env": None, "timeout_s": 5, "retries": 0,
            "backoff_s": 0.01, "batch_size": 2, "max_new_tokens": 8, "yes_is": "CONSISTENT", "prompt": TEMPLATE}
    return {**base, **over}


def completion(content) -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}).encode()


def raw_response(body: bytes, status: str = "200 OK", headers: dict | None = None) -> bytes:
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items() if v is not None)
    return (head + "\r\n").encode() + body


@contextlib.contextmanager
def server(respond):
    """A server in daemon threads answering every request with ``respond(wfile, request, stop)``; yields its
    base URL and the requests it received (method, path, Authorization header, JSON body)."""
    requests: list[dict] = []
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def handle_any(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = {"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"),
                       "body": json.loads(body) if body else None}
            requests.append(request)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                respond(self.wfile, request, stop)
            self.close_connection = True

        do_GET = do_POST = do_PUT = handle_any  # a followed redirect may arrive as any method

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def replying(*bodies_or_statuses):
    """Answers in turn (the last repeats): a str is the chat reply, an int an error status."""
    script = list(bodies_or_statuses)

    def respond(wfile, request, stop):
        step = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(step, int):
            wfile.write(raw_response(b'{"error": "scripted"}', status=f"{step} Scripted"))
        else:
            wfile.write(raw_response(completion(step)))

    return respond


def dripping(whole: bool):
    """A valid reply sent one byte per DRIP_S: the body only, or from the status line on."""

    def respond(wfile, request, stop):
        data = raw_response(completion("CONSISTENT"))
        head = b"" if whole else data[:data.index(b"\r\n\r\n") + 4]
        wfile.write(head)
        for i in range(len(head), len(data)):
            wfile.write(data[i:i + 1])
            if stop.wait(DRIP_S):
                return

    return respond


def test_normal_server_gives_verdicts_and_gets_the_bearer_key(monkeypatch):
    monkeypatch.setenv("VERIPO_TEST_JUDGE_KEY", "sekret")

    def respond(wfile, request, stop):
        prompt = request["body"]["messages"][0]["content"]
        wfile.write(raw_response(completion("Verdict: INCONSISTENT" if "moves left" in prompt else " CONSISTENT\n")))

    texts = [TEXT, TEXT.replace("two squares move", "it moves left"), "no think, no answer tags"]
    with server(respond) as (url, requests):
        judge = make_judge(spec(url, api_key_env="VERIPO_TEST_JUDGE_KEY"))
        verdicts = judge(texts, questions=["How many?", "Which way?", "?"])
    assert [v["verdict"] for v in verdicts] == ["CONSISTENT", "INCONSISTENT", "UNKNOWN"]
    assert [v["raw"] for v in verdicts] == ["CONSISTENT", "Verdict: INCONSISTENT", None]
    assert len(requests) == 2  # the text without tags is UNKNOWN without asking
    for req in requests:
        assert (req["method"], req["path"], req["auth"]) == ("POST", "/v1/chat/completions", "Bearer sekret")
        assert req["body"]["model"] == "judge-7b" and req["body"]["max_tokens"] == 8
        assert req["body"]["temperature"] == 0.0
    assert any("Which way?" in r["body"]["messages"][0]["content"] for r in requests)


def test_server_errors_are_retried_then_succeed():
    with server(replying(503, 502, "INCONSISTENT")) as (url, requests):
        judge = make_judge(spec(url + "/v1", retries=2, backoff_s=0.01))
        assert judge(TEXT)["verdict"] == "INCONSISTENT"
    assert len(requests) == 3


def test_server_errors_past_the_retries_fail_naming_the_url():
    with server(replying(500)) as (url, requests):
        judge = make_judge(spec(url, retries=1))
        with pytest.raises(JudgeError) as info:
            judge(TEXT)
    assert str(info.value) == (f"judge endpoint {url}/v1/chat/completions: HTTP 500: "
                               '{"error": "scripted"}, after 2 attempt(s)')
    assert len(requests) == 2


@pytest.mark.parametrize("whole", [False, True], ids=["body-drips", "status-line-drips"])
def test_a_dripping_server_fails_at_the_deadline(whole):
    timeout_s = 1.0
    with server(dripping(whole)) as (url, requests):
        judge = make_judge(spec(url, timeout_s=timeout_s, retries=0))
        start = time.monotonic()
        with pytest.raises(JudgeError, match=r"/v1/chat/completions: no answer within timeout_s=1 s, after 1 attempt"):
            judge(TEXT)
        took = time.monotonic() - start
    # the whole reply would take about 40 s at one byte per DRIP_S; slack for a loaded CI machine
    assert timeout_s * 0.9 <= took < timeout_s + 1.0, took
    assert len(requests) == 1


def test_the_deadline_holds_per_attempt_across_retries():
    with server(dripping(whole=False)) as (url, requests):
        judge = make_judge(spec(url, timeout_s=0.6, retries=1, backoff_s=0.05))
        start = time.monotonic()
        with pytest.raises(JudgeError, match=r"no answer within timeout_s=0.6 s, after 2 attempt"):
            judge(TEXT)
        assert time.monotonic() - start < 2 * 0.6 + 0.05 + 1.0
    assert len(requests) == 2


def big_reply(how: str):
    """A well-formed chat completion just over MAX_REPLY_BYTES, with its length announced, chunked, or
    neither (the body ends when the connection closes)."""
    body = completion("CONSISTENT " + "x" * MAX_REPLY_BYTES)

    def respond(wfile, request, stop):
        if how == "announced":
            wfile.write(raw_response(body))
        elif how == "chunked":
            wfile.write(raw_response(b"", headers={"Content-Length": None, "Transfer-Encoding": "chunked"}))
            for start in range(0, len(body), 65536):
                piece = body[start:start + 65536]
                wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            wfile.write(b"0\r\n\r\n")
        else:
            wfile.write(raw_response(body, headers={"Content-Length": None, "Connection": "close"}))

    return respond


@pytest.mark.parametrize("how", ["announced", "chunked", "until-close"])
def test_an_oversized_reply_is_refused(how):
    with server(big_reply(how)) as (url, requests):
        judge = make_judge(spec(url, retries=2))
        with pytest.raises(JudgeError, match=rf"{url}/v1/chat/completions .* over the {MAX_REPLY_BYTES}-byte limit"):
            judge(TEXT)
    assert len(requests) == 1  # the same server would send the same again: not retried


def test_a_reply_just_under_the_cap_is_read():
    content = "CONSISTENT " + "x" * (MAX_REPLY_BYTES - 200)
    assert len(completion(content)) <= MAX_REPLY_BYTES
    with server(replying(content)) as (url, requests):
        verdict = make_judge(spec(url))(TEXT)
    assert verdict["verdict"] == "CONSISTENT" and len(verdict["raw"]) == len(content)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_an_error_and_never_followed(status, monkeypatch):
    monkeypatch.setenv("VERIPO_TEST_JUDGE_KEY", "sekret")
    with server(replying("CONSISTENT")) as (elsewhere, elsewhere_requests):
        target = f"{elsewhere}/v1/chat/completions"

        def redirect(wfile, request, stop):
            wfile.write(raw_response(b"", status=f"{status} Moved", headers={"Location": target}))

        with server(redirect) as (url, requests):
            judge = make_judge(spec(url, api_key_env="VERIPO_TEST_JUDGE_KEY", retries=2))
            with pytest.raises(JudgeError) as info:
                judge(TEXT)
    message = str(info.value)
    assert message.startswith(f"judge endpoint {url}/v1/chat/completions answered HTTP {status} redirecting to "
                              f"'{target}'; redirects are not followed")
    assert "\n" not in message and "sekret" not in message
    assert elsewhere_requests == []  # neither the prompt nor the Authorization header went there
    assert len(requests) == 1 and requests[0]["auth"] == "Bearer sekret"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("reply,expected", [
    ((401, b"Unauthorized:\nbad key\n"), "answered HTTP 401: Unauthorized: bad key"),
    ((200, b"<html>\n<body>a proxy page</body>\n</html>"), "sent no chat completion: b'<html>\\n<body>a proxy page"),
    ((200, b'{"object": "error", "message": "model not found"}'), "sent no chat completion: b'{\"object\": \"error\""),
    ((200, b'{"choices": []}'), "sent no chat completion"),
    ((200, b'{"choices": [{"message": {"content": ["CONSISTENT"]}}]}'), "sent no chat completion"),
], ids=["401", "not-json", "no-choices", "empty-choices", "content-not-text"])
def test_judge_errors_are_one_line_naming_the_url(reply, expected):
    status, body = reply

    def respond(wfile, request, stop):
        wfile.write(raw_response(body, status=f"{status} Scripted"))

    with server(respond) as (url, requests):
        judge = make_judge(spec(url, retries=3))
        with pytest.raises(JudgeError) as info:
            judge(TEXT)
    message = str(info.value)
    assert message.startswith(f"judge endpoint {url}/v1/chat/completions ") and "\n" not in message
    assert expected in message
    assert len(requests) == 1  # none of these is retried


def test_a_refused_connection_fails_after_the_retries_naming_the_url():
    port = closed_port()
    judge = make_judge(spec(f"http://127.0.0.1:{port}", retries=2, backoff_s=0.01))
    start = time.monotonic()
    with pytest.raises(JudgeError) as info:
        judge(TEXT)
    message = str(info.value)
    assert message.startswith(f"judge endpoint http://127.0.0.1:{port}/v1/chat/completions: unreachable (")
    assert message.endswith("after 3 attempt(s)") and "\n" not in message
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/", "http://127.0.0.1:port/", "127.0.0.1:8000"])
def test_the_url_must_be_http_or_https(url):
    with pytest.raises(JudgeError, match=r"verifier.judge.url .*expected http://host\[:port\]"):
        make_judge(spec(url))


def test_an_api_key_that_cannot_be_a_header_is_refused_at_start(monkeypatch):
    monkeypatch.setenv("VERIPO_TEST_JUDGE_KEY", "sekret\nX-Injected: 1")
    with pytest.raises(JudgeError, match=r"\$VERIPO_TEST_JUDGE_KEY .* cannot go in an HTTP header"):
        make_judge(spec("http://127.0.0.1:9", api_key_env="VERIPO_TEST_JUDGE_KEY"))


def test_a_cli_prints_a_judge_error_as_one_line_and_exits_2():
    @click.command()
    @click.option("--url", required=True)
    @main_guard
    def judge_one(url):
        make_judge(spec(url))(TEXT)

    with server(replying(404)) as (url, requests):
        result = CliRunner().invoke(judge_one, ["--url", url])
    assert result.exit_code == 2, result.output
    assert result.output == (f"error: judge endpoint {url}/v1/chat/completions answered HTTP 404: "
                             '{"error": "scripted"}\n')


def test_judging_draws_a_bar_over_the_replies_asked_for():
    import io
    from functools import partial

    from veripo.cli import progress

    log = io.StringIO()
    texts = [TEXT] * 5 + ["no think, no answer tags"]
    with server(replying(*["CONSISTENT"] * 5)) as (url, requests):
        judge = make_judge(spec(url, batch_size=2))
        judge.progress = partial(progress, file=log, mininterval=0)
        judge(texts)
    assert len(requests) == 5
    shown = log.getvalue().replace("\r", "\n")
    assert "judge " in shown and "5/5" in shown and "6/" not in shown  # the untagged text is not asked
