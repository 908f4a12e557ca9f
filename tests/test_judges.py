"""The consistency judges: the rule judge (which reads the answer type), and the LLM judges: HF (a tiny
causal LM loaded from a directory, as a 7B judge would be), vLLM (against a mock module), and an
OpenAI-compatible HTTP endpoint served on 127.0.0.1 by this test."""
from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from veripo.verify.judges import JudgeError, make_judge
from veripo.verify.judges.base import LLMJudge, chat_text
from veripo.verify.judges.rule import normalise_answer, rule_judge, think_conclusion
from veripo.verify.judges.verdicts import render_prompt

TEMPLATE = "Reasoning: {reasoning}\nAnswer: {answer}\nReply CONSISTENT or INCONSISTENT."
PHRASES = ["the square moves left", "it is red and it moves up", "count them", "two squares, one moves down"]


def completion(phrase: str, concluded: str, answered: str) -> str:
    return f"<think>{phrase}, so the answer is {concluded}.</think><answer>${answered}$</answer>"


def spec(backend: str, **over) -> dict:
    base = {"backend": backend, "model": None, "url": None, "api_key_env": None, "timeout_s": 5, "retries": 0,
            "backoff_s": 0.01, "batch_size": 3, "max_new_tokens": 6, "yes_is": "CONSISTENT", "engine_args": {},
            "prompt": TEMPLATE}
    return {**base, **over}


@pytest.fixture(scope="module")
def judge_dirs(tmp_path_factory) -> dict:
    """Two tiny Qwen2 causal LMs saved with save_pretrained: a random one, and one fine-tuned (about
    60 steps on 8 prompts) to answer CONSISTENT when the answer is $A$ and INCONSISTENT when it is $B$ - a shortcut,
    but its reply depends on the prompt, which is what the plumbing tests need."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from veripo.model.tiny import build_tokenizer

    tok = build_tokenizer(1024, [TEMPLATE, "CONSISTENT", "INCONSISTENT", *PHRASES] * 10)
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    cfg = Qwen2Config(vocab_size=((len(tok) + 63) // 64) * 64, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      eos_token_id=eos, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    out = {}
    root = tmp_path_factory.mktemp("judges")
    out["random"] = str(root / "random")
    model.save_pretrained(out["random"])
    tok.save_pretrained(out["random"])

    batch = []  # every phrase with both answers: 8 examples, the prompt exactly as the judge renders it
    for phrase in PHRASES:
        for ok in (True, False):
            prompt = chat_text(tok, render_prompt(TEMPLATE, "", f"{phrase}, so the answer is A.",
                                                  "$A$" if ok else "$B$"))
            p = tok(prompt, add_special_tokens=False)["input_ids"]
            y = tok(("CONSISTENT" if ok else "INCONSISTENT") + "<|im_end|>", add_special_tokens=False)["input_ids"]
            batch.append((p + y, [-100] * len(p) + y))
    width = max(len(ids) for ids, _ in batch)
    ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x, _ in batch])
    labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05, loss.item()
    out["trained"] = str(root / "trained")
    model.save_pretrained(out["trained"])
    tok.save_pretrained(out["trained"])
    return out


TEXTS = [completion(PHRASES[0], "A", "A"), completion(PHRASES[1], "A", "B"),
         "<think>no answer tag here</think>", completion(PHRASES[3], "A", "A"),
         completion(PHRASES[2], "A", "B"), completion(PHRASES[1], "A", "A")]
EXPECTED = ["CONSISTENT", "INCONSISTENT", "UNKNOWN", "CONSISTENT", "INCONSISTENT", "CONSISTENT"]


def test_hf_judge_from_a_directory_batched_and_parsed(judge_dirs):
    judge = make_judge(spec("hf", model=judge_dirs["trained"]))
    verdicts = judge(TEXTS)
    assert [v["verdict"] for v in verdicts] == EXPECTED
    assert all(v["judge"] == f"hf:{judge_dirs['trained']}" for v in verdicts)
    assert verdicts[1]["raw"] == "INCONSISTENT" and verdicts[2]["raw"] is None  # UNKNOWN: the LLM is not asked
    # left padding: a prompt's reply is the same alone as in a batch with longer and shorter prompts
    assert [judge([t])[0]["raw"] for t in TEXTS] == [v["raw"] for v in verdicts]
    assert judge(TEXTS[1])["verdict"] == "INCONSISTENT"  # one string in, one verdict out
    # the answer types reach every judge; an LLM judge reads the question and ignores them
    assert judge(TEXTS, None, ["multiple_choice"] * len(TEXTS)) == verdicts


def test_hf_judge_random_lm_replies_are_unparsable(judge_dirs):
    verdicts = make_judge(spec("hf", model=judge_dirs["random"]))(TEXTS)
    assert [v["verdict"] for v in verdicts] == ["UNPARSABLE" if e != "UNKNOWN" else e for e in EXPECTED]
    assert all(isinstance(v["raw"], str) for v, e in zip(verdicts, EXPECTED) if e != "UNKNOWN")


def test_hf_judge_bad_path_names_the_key(tmp_path):
    with pytest.raises(JudgeError, match="verifier.judge.model"):
        make_judge(spec("hf", model=str(tmp_path / "nothing")))


def test_vllm_judge_against_a_mock_engine(judge_dirs, monkeypatch):
    """The mock stands in for vLLM, which needs a CUDA GPU: it checks what our code asks of the engine."""
    from transformers import AutoTokenizer

    calls = {}

    class SamplingParams:
        def __init__(self, **kw):
            calls["sampling"] = kw

    class LLM:
        def __init__(self, model, **kw):
            calls["init"] = {"model": model, **kw}
            calls["generate"] = []

        def get_tokenizer(self):
            return AutoTokenizer.from_pretrained(judge_dirs["trained"])

        def generate(self, prompts, params, use_tqdm=True):
            calls["generate"].append(list(prompts))
            reply = lambda p: "Verdict: CONSISTENT" if "$A$" in p else "The answer is not consistent."  # noqa: E731
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=reply(p))]) for p in prompts]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    monkeypatch.setitem(sys.modules, "vllm.v1.engine.exceptions",
                        types.SimpleNamespace(EngineDeadError=type("EngineDeadError", (Exception,), {})))
    for key in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_ENABLE_V1_MULTIPROCESSING"):  # the judge sets them on CPU
        monkeypatch.setenv(key, "1")
    judge = make_judge(spec("vllm", model="/models/judge-7b", engine_args={"tensor_parallel_size": 2}))
    verdicts = judge(TEXTS)
    assert [v["verdict"] for v in verdicts] == EXPECTED
    assert verdicts[0]["judge"] == "vllm:/models/judge-7b"
    assert calls["init"] == {"model": "/models/judge-7b", "tensor_parallel_size": 2}
    assert calls["sampling"] == {"temperature": 0.0, "max_tokens": 6}
    assert [len(b) for b in calls["generate"]] == [3, 2]  # 5 prompts (one UNKNOWN not asked), batch_size 3
    assert all(p.endswith("<|im_start|>assistant\n") for b in calls["generate"] for p in b)  # chat template


def test_vllm_missing_says_gpu_only(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(JudgeError, match="CUDA GPUs only"):
        make_judge(spec("vllm", model="/models/judge"))


@contextlib.contextmanager
def chat_server(state: dict):
    """An OpenAI-style /v1/chat/completions server on 127.0.0.1 in a daemon thread; shut down on exit."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["requests"].append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            if state.get("sleep"):
                time.sleep(state["sleep"])
            status = state["statuses"].pop(0) if state.get("statuses") else 200
            if status != 200:
                payload = json.dumps({"error": "scripted failure"}).encode()
            else:
                with state["lock"]:
                    reply = state["complete"]([body["messages"][-1]["content"]])[0]
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def log_message(self, *args):
            pass

    state.setdefault("requests", [])
    state.setdefault("lock", threading.Lock())
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_http_judge_matches_the_hf_judge_it_serves(judge_dirs, monkeypatch):
    hf = make_judge(spec("hf", model=judge_dirs["trained"]))
    state = {"complete": hf.complete}
    monkeypatch.setenv("VERIPO_TEST_JUDGE_KEY", "sekret")
    with chat_server(state) as url:
        judge = make_judge(spec("http", url=url, model="tiny-judge", api_key_env="VERIPO_TEST_JUDGE_KEY"))
        verdicts = judge(TEXTS)
    assert [v["verdict"] for v in verdicts] == EXPECTED
    assert [v["raw"] for v in verdicts] == [v["raw"] for v in hf(TEXTS)]
    assert verdicts[0]["judge"] == "http:tiny-judge"
    req = state["requests"][0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sekret"
    assert req["body"]["model"] == "tiny-judge" and req["body"]["temperature"] == 0.0
    assert req["body"]["max_tokens"] == 6 and req["body"]["messages"][0]["role"] == "user"
    assert len(state["requests"]) == 5


def test_http_judge_retries_server_errors_then_succeeds():
    state = {"complete": lambda prompts: ["Verdict: INCONSISTENT"], "statuses": [503, 502]}
    with chat_server(state) as url:
        judge = make_judge(spec("http", url=url + "/v1", retries=2, batch_size=1))
        assert judge(TEXTS[0])["verdict"] == "INCONSISTENT"
    assert len(state["requests"]) == 3


def test_http_judge_client_error_fails_at_once():
    state = {"complete": lambda prompts: ["CONSISTENT"], "statuses": [401]}
    with chat_server(state) as url:
        judge = make_judge(spec("http", url=url, retries=3))
        with pytest.raises(JudgeError, match=r"/v1/chat/completions answered HTTP 401"):
            judge(TEXTS[0])
    assert len(state["requests"]) == 1


def test_http_judge_unreachable_names_the_url():
    with socket.socket() as s:  # a port nothing listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = make_judge(spec("http", url=f"http://127.0.0.1:{port}", retries=2, backoff_s=0.01))
    t0 = time.monotonic()
    with pytest.raises(JudgeError, match=rf"http://127.0.0.1:{port}/v1/chat/completions: unreachable .*3 attempt"):
        judge(TEXTS[0])
    assert time.monotonic() - t0 < 5


def test_http_judge_timeout():
    state = {"complete": lambda prompts: ["CONSISTENT"], "sleep": 1.0}
    with chat_server(state) as url:
        judge = make_judge(spec("http", url=url, timeout_s=0.2, retries=1, backoff_s=0.01))
        with pytest.raises(JudgeError, match=r"no answer within timeout_s=0.2 s, after 2 attempt"):
            judge(TEXTS[0])
    assert len(state["requests"]) == 2


def test_http_api_key_env_must_be_set(monkeypatch):
    monkeypatch.delenv("VERIPO_NO_SUCH_KEY", raising=False)
    with pytest.raises(JudgeError, match="VERIPO_NO_SUCH_KEY"):
        make_judge(spec("http", url="http://127.0.0.1:9", api_key_env="VERIPO_NO_SUCH_KEY"))


# The rule judge. Which conclusions count depends on the answer type: an option letter only for multiple
# choice and only in a form that cannot be prose (upper case; lower case only after "option"), a number
# only for numeric and math questions. Deliberate: "the answer is (c)" names no option, since lower-case
# letters in reasoning are mostly articles and list markers; "option b" does.
MC, NUM, MATH = "multiple_choice", "numeric", "math"


@pytest.mark.parametrize("think, answer_type, expected", [
    ("Counting again, the answer is a total of 3.", NUM, "3"),
    ("Counting again, the answer is a total of 3.", MC, None),  # "a" is an article, not option A
    ("Counting again, the answer is a total of 3.", MATH, "3"),
    ("It moves left, so the answer is B.", MC, "B"),
    ("It moves left, so the answer is B.", NUM, None),  # a letter is no number
    ("so the answer is B because it turns", MC, "B"),
    ("the answer is (c)", MC, None),
    ("the answer is (C)", MC, "C"),
    ("the answer is option b", MC, "B"),
    ("The answer is Option D, the red one.", MC, "D"),
    ("so the answer is $C$", MC, "C"),
    ("the answer is: E", MC, "E"),
    ("the answer is I think B", MC, None),  # the pronoun, not option I
    ("the answer is I.", MC, "I"),
    ("The answer is Blue.", MC, None),  # a word, not an option letter
    ("I think the answer is a bit unclear", MC, None),
    ("I think the answer is a bit unclear", NUM, None),
    ("First the answer is A, but wait, the answer is (C).", MC, "C"),
    ("the answer is B. Then I doubted it: the answer is a bit unclear.", MC, "B"),  # the last stated one
    ("so the answer is $2$.", NUM, "2"),
    ("the answer should be 2.5 meters.", NUM, "2.5"),
    ("the answer would be -3.", MATH, "-3"),
    ("the answer is about 1,200 m", NUM, "1200"),
    ("the answer is large. It is 7 m.", NUM, None),  # a number in the next sentence is not the conclusion
    ("the answer is $\\frac{1}{2}$", MATH, None),  # part of an expression, not a number
    ("the answer is 2x", MATH, None),
    # no type (a caller without one): either form
    ("so the answer is B.", None, "B"),
    ("so the answer is $2$.", None, "2"),
])
def test_rule_conclusion_by_answer_type(think, answer_type, expected):
    assert think_conclusion(think, answer_type) == expected


@pytest.mark.parametrize("content, answer_type, expected", [
    ("$B$", MC, "B"), ("(B)", MC, "B"), ("B.", MC, "B"), ("B", MC, "B"), ("b", MC, "B"), ("(b)", MC, "B"),
    ("$B$.", MC, "B"), ("B. Clockwise", MC, "B"), ("(B) Clockwise", MC, "B"), ("option c", MC, "C"),
    ("Clockwise", MC, None), ("A cat", MC, None), ("$2$", MC, None),
    ("$2$", NUM, "2"), ("2.0", NUM, "2.0"), ("3 meters", NUM, "3"), ("B", NUM, None),
    (" $\\frac{1}{2}$ ", MATH, "$\\frac{1}{2}$"), ("", MATH, None), (None, MC, None),
])
def test_rule_answer_by_answer_type(content, answer_type, expected):
    assert normalise_answer(content, answer_type) == expected


def rollout_text(think: str, answer: str) -> str:
    return f"<think>{think}</think><answer>{answer}</answer>"


@pytest.mark.parametrize("think, answer, answer_type, expected", [
    ("Counting them, the answer is a total of 3.", "$3$", NUM, "CONSISTENT"),
    ("Counting them, the answer is a total of 3.", "$4$", NUM, "INCONSISTENT"),
    # the old rule read "a" as option A here and called the rollout inconsistent with its $B$
    ("Counting them, the answer is a total of 3.", "$B$", MC, "UNKNOWN"),
    ("It moves left, so the answer is B.", "$B$", MC, "CONSISTENT"),
    ("It moves left, so the answer is B.", "(b)", MC, "CONSISTENT"),
    ("It moves left, so the answer is B.", "B. Clockwise", MC, "CONSISTENT"),
    ("It moves left, so the answer is B.", "$C$", MC, "INCONSISTENT"),
    ("It moves left, so the answer is option b", "$B$", MC, "CONSISTENT"),
    ("It moves left, the answer is $C$", "$C$", MC, "CONSISTENT"),
    ("It moves left, the answer is (c)", "$C$", MC, "UNKNOWN"),
    ("I think the answer is a bit unclear", "$B$", MC, "UNKNOWN"),
    ("I think the answer is a bit unclear", "$2$", NUM, "UNKNOWN"),
    ("so the answer is 2.0", "$2$", NUM, "CONSISTENT"),
    ("so the answer is 2.0", "$2$", MATH, "CONSISTENT"),
    ("one of two, so the answer is 0.5", "$\\frac{1}{2}$", MATH, "CONSISTENT"),  # math-verify on the answer
    ("one of two, so the answer is 0.5", "$\\frac{1}{3}$", MATH, "INCONSISTENT"),
    ("so the answer is B.", "Clockwise", MC, "UNKNOWN"),  # no option letter in the answer
])
def test_rule_judge_verdicts_by_answer_type(think, answer, answer_type, expected):
    assert rule_judge(rollout_text(think, answer), answer_type)["verdict"] == expected


def test_rule_judge_takes_answer_types_through_the_interface():
    judge = make_judge({"backend": "rule"})
    texts = [rollout_text("the answer is a total of 3.", "$3$"), rollout_text("the answer is a total of 3.", "$A$")]
    assert [v["verdict"] for v in judge(texts, ["How many?", "Which?"], [NUM, MC])] == ["CONSISTENT", "UNKNOWN"]
    assert judge(texts[0], "How many?", NUM)["think_conclusion"] == "3"  # one string in, one verdict out
    with pytest.raises(ValueError, match="2 texts but 1 answer types"):
        judge(texts, None, [NUM])
    with pytest.raises(ValueError, match="'open_ended'"):
        judge(texts, None, [NUM, "open_ended"])


def test_llm_judges_accept_and_ignore_answer_types():
    class Echo(LLMJudge):
        name = "echo"

        def complete(self, prompts):
            return ["CONSISTENT" if "$A$" in p else "INCONSISTENT" for p in prompts]

    judge = Echo(spec("http"))
    verdicts = judge(TEXTS, None, [MC] * len(TEXTS))
    assert [v["verdict"] for v in verdicts] == EXPECTED
    assert judge(TEXTS) == verdicts
    with pytest.raises(ValueError, match="answer types"):
        judge(TEXTS, None, [MC])
