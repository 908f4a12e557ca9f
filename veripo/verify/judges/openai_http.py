"""The LLM judge behind an OpenAI-compatible HTTP endpoint (``POST <url>/v1/chat/completions``).

Any server speaking that API works: ``vllm serve``, text-generation-inference, llama.cpp's server, a
hosted model. Standard library only (http.client). ``batch_size`` requests run at once.

Each request has one deadline, ``timeout_s`` after it starts, covering connect, send and the whole reply:
a server that answers a byte at a time fails at the deadline like one that never answers. A reply larger
than ``MAX_REPLY_BYTES`` is refused. A redirect (3xx) is an error, never followed: following it would send
the prompt and the API key to another address and record that address's answer as verdicts.

A request is retried ``retries`` times after connection errors, timeouts, broken replies, 408, 429 and 5xx
answers, waiting ``backoff_s``, 2x, 4x ... in between. Anything else (a redirect, 401, 404, an oversized
reply, a body that is not a chat completion) fails at once. Every error is one line naming the URL.
"""
from __future__ import annotations

import http.client
import io
import json
import os
import socket
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from veripo.verify.judges.base import JudgeError, LLMJudge

# A verdict reply is a few hundred bytes, a thinking judge's a few tens of KiB; a body past 1 MiB is not an
# answer to our prompt (a wrong server, an error page, an endless stream), and reading it whole would hold
# it in memory once per request in flight.
MAX_REPLY_BYTES = 1 << 20

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class _Transient(Exception):
    """A failed attempt worth repeating; the message says what went wrong."""


def endpoint(url: str) -> str:
    """The chat-completions URL of a base URL (``http://host:8000``, ``.../v1`` or the full path)."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


def _time_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


class _DeadlineSocket:
    """The one thing http.client's response takes from its socket (``makefile``), giving a reader whose
    every wait is bounded by the time left: a per-read timeout alone restarts with each byte received."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock, self.deadline = sock, deadline

    def makefile(self, mode: str) -> io.BufferedReader:
        # the socket's own file, not a bare recv: it keeps the socket open after http.client closes the
        # connection to hand it to the response (replies delimited by closing the connection)
        return io.BufferedReader(_DeadlineReader(self.sock.makefile("rb", buffering=0), self.sock, self.deadline))


class _DeadlineReader(io.RawIOBase):
    def __init__(self, raw, sock: socket.socket, deadline: float):
        self.raw, self.sock, self.deadline = raw, sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.sock.settimeout(_time_left(self.deadline))
        return self.raw.readinto(buffer)

    def close(self) -> None:
        self.raw.close()
        super().close()


def _one_line(raw: bytes) -> str:
    return " ".join(raw.decode("utf-8", "replace").split())


class HTTPJudge(LLMJudge):
    def __init__(self, spec: dict):
        super().__init__(spec)
        self.url = endpoint(spec["url"])
        parts = urllib.parse.urlsplit(self.url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise JudgeError(f"verifier.judge.url {spec['url']!r}: expected http://host[:port][/path] or https://...")
        self._connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._host, self._port = parts.hostname, port
        self._path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.model = spec.get("model")
        self.name = f"http:{self.model or self.url}"
        self.timeout_s = float(spec["timeout_s"])
        self.retries = int(spec["retries"])
        self.backoff_s = float(spec["backoff_s"])
        self.max_new_tokens = int(spec["max_new_tokens"])
        self.headers = {"Content-Type": "application/json"}
        key_env = spec.get("api_key_env")
        if key_env:
            key = os.environ.get(key_env)
            if not key:
                raise JudgeError(f"verifier.judge.api_key_env names {key_env!r}, which is not set in the environment")
            if not (key.isascii() and key.isprintable()):
                # a pasted key's stray newline or non-ASCII character would otherwise fail inside http.client
                # at the first request, as a traceback
                raise JudgeError(f"the API key in ${key_env} (verifier.judge.api_key_env) holds characters that "
                                 "cannot go in an HTTP header (non-ASCII, a newline or a control character)")
            self.headers["Authorization"] = f"Bearer {key}"

    def _payload(self, prompt: str) -> bytes:
        body = {"messages": [{"role": "user", "content": prompt}], "temperature": 0.0,
                "max_tokens": self.max_new_tokens}
        if self.model:
            body["model"] = self.model
        return json.dumps(body).encode("utf-8")

    def ask(self, prompt: str) -> str:
        """One reply; a bounded number of attempts."""
        data = self._payload(prompt)
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                return self._reply(self._post(data))
            except _Transient as exc:
                problem = str(exc)
        raise JudgeError(f"judge endpoint {self.url}: {problem}, after {self.retries + 1} attempt(s)")

    def _post(self, data: bytes) -> bytes:
        """One attempt: the reply's body, all of it read before the deadline."""
        deadline = time.monotonic() + self.timeout_s
        conn = None
        try:
            conn = self._connection_class(self._host, self._port, timeout=_time_left(deadline))
            conn.response_class = lambda sock, *args, **kwargs: http.client.HTTPResponse(
                _DeadlineSocket(sock, deadline), *args, **kwargs)
            conn.connect()
            conn.sock.settimeout(_time_left(deadline))  # since Python 3.5 this bounds a whole sendall
            conn.request("POST", self._path, body=data, headers=self.headers)
            resp = conn.getresponse()
            self._check_status(resp)
            declared = resp.length
            if declared is not None and declared > MAX_REPLY_BYTES:
                raise JudgeError(f"judge endpoint {self.url} announced a {declared}-byte reply, over the "
                                 f"{MAX_REPLY_BYTES}-byte limit (MAX_REPLY_BYTES in {__name__})")
            raw = resp.read(MAX_REPLY_BYTES + 1)
            if len(raw) > MAX_REPLY_BYTES:
                raise JudgeError(f"judge endpoint {self.url} sent a reply over the {MAX_REPLY_BYTES}-byte limit "
                                 f"(MAX_REPLY_BYTES in {__name__})")
            if declared is not None and len(raw) < declared:
                raise _Transient(f"reply cut off after {len(raw)} of {declared} bytes")
            return raw
        except TimeoutError:
            raise _Transient(f"no answer within timeout_s={self.timeout_s:g} s") from None
        except OSError as exc:
            raise _Transient(f"unreachable ({exc})") from None
        except http.client.HTTPException as exc:
            raise _Transient(f"broken HTTP reply ({type(exc).__name__}: {exc})") from None
        finally:
            if conn is not None:
                conn.close()

    def _check_status(self, resp: http.client.HTTPResponse) -> None:
        status = resp.status
        if 300 <= status < 400:
            raise JudgeError(f"judge endpoint {self.url} answered HTTP {status} redirecting to "
                             f"{resp.getheader('Location')!r}; redirects are not followed (they would carry the "
                             f"prompt and API key elsewhere): set verifier.judge.url to the server's own address")
        if status < 400:
            return
        try:
            detail = _one_line(resp.read(300))
        except (OSError, http.client.HTTPException):
            detail = ""
        if status in _RETRY_STATUS:
            raise _Transient(f"HTTP {status}: {detail}")
        raise JudgeError(f"judge endpoint {self.url} answered HTTP {status}: {detail}")

    def _reply(self, raw: bytes) -> str:
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
            if content is None or isinstance(content, str):
                return content or ""
        except (ValueError, KeyError, IndexError, TypeError):
            pass
        raise JudgeError(f"judge endpoint {self.url} sent no chat completion: {raw[:300]!r}")

    def complete(self, prompts: list[str]) -> list[str]:
        replies: list[str] = []
        with ThreadPoolExecutor(max_workers=max(1, self.batch_size)) as pool:
            for start in range(0, len(prompts), self.batch_size):
                replies += list(pool.map(self.ask, prompts[start:start + self.batch_size]))
                self.report(len(replies), len(prompts))
        return [r.strip() for r in replies]
