"""The LLM judge behind an OpenAI-compatible HTTP endpoint (``POST <url>/v1/chat/completions``).

Any server speaking that API works: ``vllm serve``, text-generation-inference, llama.cpp's server, a
hosted model. Standard library only (urllib). ``batch_size`` requests run at once; each has a
``timeout_s`` and is retried ``retries`` times after connection errors, timeouts, 429 and 5xx answers,
waiting ``backoff_s``, 2x, 4x ... in between. Other HTTP errors (401, 404, ...) fail at once. When the
endpoint stays unreachable the error names the URL.
"""
from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from veripo.judges.base import JudgeError, LLMJudge, report

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


def endpoint(url: str) -> str:
    """The chat-completions URL of a base URL (``http://host:8000``, ``.../v1`` or the full path)."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


class HTTPJudge(LLMJudge):
    def __init__(self, spec: dict):
        super().__init__(spec)
        self.url = endpoint(spec["url"])
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
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            req = urllib.request.Request(self.url, data=data, headers=self.headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace")
                last = f"HTTP {exc.code}: {detail}"
                if exc.code in _RETRY_STATUS:
                    continue
                raise JudgeError(f"judge endpoint {self.url} answered {last}") from None
            except (TimeoutError, socket.timeout):
                last = f"no answer within timeout_s={self.timeout_s:g} s"
                continue
            except urllib.error.URLError as exc:
                reason = exc.reason
                last = (f"no answer within timeout_s={self.timeout_s:g} s" if isinstance(reason, (TimeoutError, socket.timeout))
                        else f"unreachable ({reason})")
                continue
            except (ConnectionError, OSError) as exc:
                last = f"unreachable ({exc})"
                continue
            return self._reply(raw)
        raise JudgeError(f"judge endpoint {self.url}: {last}, after {self.retries + 1} attempt(s)")

    def _reply(self, raw: bytes) -> str:
        try:
            return json.loads(raw)["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeError(f"judge endpoint {self.url} sent no chat completion: {raw[:300]!r}") from None

    def complete(self, prompts: list[str]) -> list[str]:
        replies: list[str] = []
        with ThreadPoolExecutor(max_workers=max(1, self.batch_size)) as pool:
            for start in range(0, len(prompts), self.batch_size):
                replies += list(pool.map(self.ask, prompts[start:start + self.batch_size]))
                report(self.name, len(replies), len(prompts))
        return [r.strip() for r in replies]
