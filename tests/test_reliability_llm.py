"""Reliability, LLM faults: every way an OpenAI-compatible server can fail is either retried as the
retry policy says or ends in a ClassifierError that gives the attempt count and the last cause.

A real HTTP server on 127.0.0.1 (support/fake_llm.py), a trickling one (support/fault_llm.py),
a closed port and an unresolvable host name; the real openai client throughout. Faults already
covered in test_classify.py: connection refused, one timeout, 429 with Retry-After, 500/502/503
retried, a persistent 500, invalid/refused/truncated answers, 4xx not retried, quota.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time

import numpy as np
import pytest
from PIL import Image
from support.fake_llm import (
    CHAT_PATH,
    FakeOpenAIServer,
    FakeResponse,
    chat_completion_json,
    closed_port_url,
)
from support.fault_llm import TricklingServer

from regionedit.classify import LLMClassifier
from regionedit.errors import ClassifierError, InpaintError
from regionedit.inpaint_openai import OpenAIImageInpainter

SOURCE, TARGET = "a dog sitting on grass", "a dog sitting on a beach"


def fast_classifier(**kwargs: object) -> LLMClassifier:
    """The LLM classifier with millisecond backoff waits, so retries cost nothing."""
    options = dict(timeout=2.0, max_attempts=3, backoff_base=0.001, backoff_max=0.005)
    return LLMClassifier(**{**options, **kwargs})


def test_unresolvable_host_fails_after_the_policy_attempts() -> None:
    # .invalid never resolves (RFC 2606): the resolver answers at once, no network needed
    url = "http://nonexistent.invalid/v1"
    with pytest.raises(ClassifierError) as caught:
        fast_classifier(base_url=url, max_attempts=2).classify(SOURCE, TARGET)
    assert caught.value.attempts == 2
    message = str(caught.value)
    assert "2 attempt(s)" in message and "could not connect" in message and url in message


def test_a_server_that_never_answers_in_time(llm_env: FakeOpenAIServer) -> None:
    llm_env.enqueue(*[FakeResponse(json=chat_completion_json("{}"), delay=5.0)] * 3)

    with pytest.raises(ClassifierError) as caught:
        fast_classifier(timeout=0.2, max_attempts=3).classify(SOURCE, TARGET)

    assert caught.value.attempts == 3 == len(llm_env.requests)
    assert "3 attempt(s): the request timed out" in str(caught.value)


def test_a_trickling_answer_is_cut_off_by_the_timeout() -> None:
    """A valid answer sent a byte at a time: each byte comes well within the timeout, so only a
    deadline on the whole request stops the client from waiting out the whole trickle."""
    answer = json.dumps({"reason": "the ground changes " * 5, "label": "background"})
    with TricklingServer(chat_completion_json(answer), interval=0.02) as server:
        with pytest.raises(ClassifierError) as caught:
            fast_classifier(base_url=server.base_url, timeout=0.3, max_attempts=2).classify(
                SOURCE, TARGET
            )
        assert server.requests == caught.value.attempts == 2
    assert "the request timed out" in str(caught.value)


def test_rate_limit_without_retry_after_backs_off(
    llm_env: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    llm_env.enqueue(FakeResponse.error(429, "slow down", type_="rate_limit"))
    llm_env.answer("background")

    with caplog.at_level(logging.INFO, logger="regionedit"):
        assert fast_classifier().classify(SOURCE, TARGET).label == "background"

    assert len(llm_env.requests) == 2
    assert "HTTP 429: slow down); retrying in 0.00" in caplog.text  # the policy's backoff


def test_retry_after_as_a_date_and_a_too_long_one_is_capped(
    llm_env: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    soon = email.utils.formatdate(time.time() - 5, usegmt=True)  # already past: no wait
    llm_env.enqueue(
        FakeResponse.error(429, "later", headers={"Retry-After": soon}),
        FakeResponse.error(503, "busy", headers={"Retry-After": "3600"}),
    )
    llm_env.answer("foreground")
    classifier = fast_classifier()
    classifier.policy = classifier.policy.model_copy(update={"retry_after_max": 0.05})

    with caplog.at_level(logging.INFO, logger="regionedit"):
        assert classifier.classify(SOURCE, TARGET).label == "foreground"

    assert "HTTP 429: later); retrying in 0.00 s" in caplog.text
    assert "HTTP 503: busy); retrying in 0.05 s" in caplog.text  # an hour asked, capped


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_persistent_transient_errors_end_after_max_attempts(
    llm_env: FakeOpenAIServer, status: int
) -> None:
    llm_env.enqueue(*[FakeResponse.error(status, f"error {status}")] * 5)

    with pytest.raises(ClassifierError) as caught:
        fast_classifier(max_attempts=3).classify(SOURCE, TARGET)

    assert caught.value.attempts == 3 == len(llm_env.requests)
    assert f"3 attempt(s): HTTP {status}: error {status}" in str(caught.value)


def test_different_faults_share_one_attempt_budget_and_the_last_cause_is_named(
    llm_env: FakeOpenAIServer,
) -> None:
    llm_env.enqueue(
        FakeResponse.error(503),
        FakeResponse.error(429, "too many"),
        FakeResponse(json=chat_completion_json("{}"), delay=5.0),
        FakeResponse.error(502, "bad gateway"),
    )

    with pytest.raises(ClassifierError) as caught:
        fast_classifier(timeout=0.3, max_attempts=4).classify(SOURCE, TARGET)

    assert caught.value.attempts == 4 == len(llm_env.requests)
    assert "4 attempt(s): HTTP 502: bad gateway" in str(caught.value)


def test_recovers_within_the_budget(llm_env: FakeOpenAIServer) -> None:
    llm_env.enqueue(
        FakeResponse.error(503),
        FakeResponse(json=chat_completion_json("{}"), delay=5.0),
        FakeResponse.error(429),
    )
    llm_env.answer("background")
    result = fast_classifier(timeout=0.3, max_attempts=4).classify(SOURCE, TARGET)
    assert result.label == "background" and len(llm_env.requests) == 4


NOT_A_COMPLETION = {
    "html-page": b"<html><body>502 Bad Gateway</body></html>",
    "empty-body": b"",
    "no-choices": b'{"id": "x", "choices": []}',
    "json-list": b"[1, 2, 3]",
    "null-message": b'{"choices": [{"index": 0, "message": null, "finish_reason": "stop"}]}',
}


@pytest.mark.parametrize("body", NOT_A_COMPLETION)
def test_a_200_that_is_not_a_chat_completion(llm_env: FakeOpenAIServer, body: str) -> None:
    llm_env.enqueue(*[FakeResponse(body=NOT_A_COMPLETION[body])] * 2)

    with pytest.raises(ClassifierError) as caught:
        fast_classifier().classify(SOURCE, TARGET)

    # asked once more, like any invalid answer, then refused with the cause
    assert caught.value.attempts == 2 == len(llm_env.requests)
    assert "200 with a body that is not a chat completion" in str(caught.value)


def test_a_200_that_is_not_json_from_the_image_endpoint(fake_llm: FakeOpenAIServer) -> None:
    path = "/v1/images/edits"
    fake_llm.enqueue(FakeResponse(body=b"<html>maintenance</html>"), path=path)
    inpainter = OpenAIImageInpainter(base_url=fake_llm.base_url, max_attempts=2)
    mask = np.zeros((32, 32), np.float32)
    mask[8:24, 8:24] = 1.0

    with pytest.raises(InpaintError, match="not JSON"):
        inpainter.inpaint(Image.new("RGB", (32, 32)), mask, "a beach", seed=0)

    assert len(fake_llm.requests_to(path)) == 1
    assert fake_llm.requests_to(CHAT_PATH) == []


# -- the advice fits the cause: a slow server, a rate-limiting one --------------------------------


def test_a_timeout_states_the_seconds_and_says_how_to_wait_longer(
    llm_env: FakeOpenAIServer,
) -> None:
    llm_env.enqueue(*[FakeResponse(json=chat_completion_json("{}"), delay=5.0)] * 2)

    with pytest.raises(ClassifierError) as caught:
        fast_classifier(timeout=0.2, max_attempts=2).classify(SOURCE, TARGET)

    message = str(caught.value)
    assert "timed out after 0.2 s" in message
    for setting in ("REGIONEDIT_LLM_TIMEOUT", "Editor(llm_timeout=...)",
                    "Editor(llm_attempts=...)"):
        assert setting in message
    assert "running and reachable" not in message


def test_a_persistent_rate_limit_says_to_wait_or_send_fewer_requests(
    llm_env: FakeOpenAIServer,
) -> None:
    llm_env.enqueue(*[FakeResponse.error(429, "Rate limit reached", type_="requests")] * 3)

    with pytest.raises(ClassifierError) as caught:
        fast_classifier(max_attempts=3).classify(SOURCE, TARGET)

    message = str(caught.value)
    assert "rate-limiting" in message and "wait" in message
    assert "edit_many(llm_concurrency=...)" in message
    assert "running and reachable" not in message


def test_a_failing_server_is_not_called_unreachable(llm_env: FakeOpenAIServer) -> None:
    llm_env.enqueue(*[FakeResponse.error(503, "overloaded")] * 2)

    with pytest.raises(ClassifierError) as caught:
        fast_classifier(max_attempts=2).classify(SOURCE, TARGET)

    assert "reachable but kept failing" in str(caught.value)


def test_timeout_and_attempts_come_from_the_environment(
    llm_env: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGIONEDIT_LLM_TIMEOUT", "0.25")
    monkeypatch.setenv("REGIONEDIT_LLM_ATTEMPTS", "2")
    llm_env.enqueue(*[FakeResponse(json=chat_completion_json("{}"), delay=5.0)] * 3)
    classifier = LLMClassifier(backoff_base=0.001, backoff_max=0.005)

    started = time.monotonic()
    with pytest.raises(ClassifierError) as caught:
        classifier.classify(SOURCE, TARGET)

    assert caught.value.attempts == 2 == len(llm_env.requests)
    assert "timed out after 0.25 s" in str(caught.value)
    assert time.monotonic() - started < 3
    # arguments win over the environment
    assert LLMClassifier(timeout=7, max_attempts=5).policy.max_attempts == 5
    assert LLMClassifier(timeout=7).timeout == 7


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REGIONEDIT_LLM_TIMEOUT", "soon"),
        ("REGIONEDIT_LLM_TIMEOUT", "0"),
        ("REGIONEDIT_LLM_TIMEOUT", "inf"),
        ("REGIONEDIT_LLM_ATTEMPTS", "0"),
        ("REGIONEDIT_LLM_ATTEMPTS", "2.5"),
    ],
)
def test_an_unusable_setting_in_the_environment_is_named(
    llm_env: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ClassifierError) as caught:
        LLMClassifier()

    assert f"{variable}={value!r}" in str(caught.value)
    assert llm_env.requests == []


@pytest.mark.parametrize(("argument", "value"), [("timeout", -1), ("max_attempts", 0)])
def test_an_unusable_argument_is_named(
    llm_env: FakeOpenAIServer, argument: str, value: float
) -> None:
    with pytest.raises(ClassifierError, match=f"{argument}={value}"):
        LLMClassifier(**{argument: value})


# -- a base URL that carries a key in its query ---------------------------------------------------


URL_TOKEN = "url-token-SECRET-987"


def test_a_query_token_in_the_base_url_is_sent_and_never_shown(
    fake_llm: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    base_url = f"{fake_llm.base_url}?api-key={URL_TOKEN}"
    fake_llm.answer("background")
    classifier = fast_classifier(base_url=base_url)

    with caplog.at_level(logging.DEBUG):
        assert classifier.classify(SOURCE, TARGET).label == "background"
        fake_llm.enqueue(*[FakeResponse.error(500, f"bad key {URL_TOKEN}")] * 3)
        with pytest.raises(ClassifierError) as caught:
            classifier.classify(SOURCE, "a dog sitting on the moon")

    # the token reaches the server as a query parameter of the right path
    assert [(r.path, r.query) for r in fake_llm.requests][0] == (
        "/v1/chat/completions", {"api-key": URL_TOKEN}
    )
    message = str(caught.value) + repr(caught.value)
    assert URL_TOKEN not in message and "bad key ***" in message
    assert URL_TOKEN not in caplog.text  # the HTTP library's request lines included
    assert "api-key=***" in caplog.text


def test_a_query_token_is_masked_where_the_url_is_shown() -> None:
    url = closed_port_url()
    with pytest.raises(ClassifierError) as caught:
        fast_classifier(base_url=f"{url}?api-key={URL_TOKEN}", max_attempts=1).classify(
            SOURCE, TARGET
        )
    assert f"{url}?api-key=***" in str(caught.value)
    assert URL_TOKEN not in str(caught.value)

    inpainter = OpenAIImageInpainter(base_url=f"http://u:pw-SECRET@host/v1?key={URL_TOKEN}&v=2")
    assert inpainter.describe()["base_url"] == "http://host/v1?key=***&v=***"


def test_the_cli_flags_set_the_timeout_and_the_attempts(
    llm_env: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from regionedit.cli import main

    llm_env.enqueue(*[FakeResponse(json=chat_completion_json("{}"), delay=5.0)] * 3)

    code = main(["classify", "--classifier", "llm", "--source", SOURCE, "--target", TARGET,
                 "--llm-timeout", "0.3", "--llm-attempts", "2"])

    err = capsys.readouterr().err
    assert code == 4 and len(llm_env.requests) == 2
    assert "timed out after 0.3 s" in err and "--llm-timeout" in err
