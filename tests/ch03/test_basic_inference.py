"""Basic inference (3.5.1-3.5.3): single, batch and streaming agree, on every backend; ch05 can plug in."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from ch03_env.backends import GenerationRequest, GenerationResponse, InferenceBackend, TransformersBackend
from ch03_env.basic_inference import main
from common.chat import FRANCE_ANSWER, FRANCE_PROMPT
from common.report import parse_json_line

OTHER = "Name three primary colors."


@pytest.fixture(scope="module")
def hf_backend():
    backend = TransformersBackend()
    yield backend
    backend.close()


@pytest.mark.slow
def test_transformers_single_batch_and_stream_give_the_same_greedy_answer(hf_backend):
    single = hf_backend.generate([GenerationRequest(FRANCE_PROMPT, 10)])[0]
    assert single.text.strip() == FRANCE_ANSWER
    assert single.finish_reason == "stop" and single.completion_tokens <= 10
    # left padding: the shorter prompt in a batch must not change its answer
    batch = hf_backend.generate([GenerationRequest(OTHER, 10), GenerationRequest(FRANCE_PROMPT, 10)])
    assert batch[1].text == single.text
    pieces = list(hf_backend.stream(GenerationRequest(FRANCE_PROMPT, 10)))
    assert len(pieces) > 1 and "".join(pieces).strip() == FRANCE_ANSWER


def unloaded_backend() -> TransformersBackend:
    return TransformersBackend.__new__(TransformersBackend)  # no model: these checks happen before it is used


def test_transformers_backend_satisfies_the_protocol():
    assert isinstance(unloaded_backend(), InferenceBackend)
    assert isinstance(EchoBackend(), InferenceBackend)


def test_mixed_batch_settings_are_refused():
    with pytest.raises(ValueError, match="same max_new_tokens"):
        unloaded_backend().generate([GenerationRequest("a", 4), GenerationRequest("b", 8)])


def test_bad_request_values_are_refused():
    with pytest.raises(ValueError):
        GenerationRequest("x", max_new_tokens=0)
    with pytest.raises(ValueError):
        GenerationRequest("x", temperature=-1)


def test_engine_backend_points_to_chapter_5(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--backend", "engine", "--smoke"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "ch05_scheduling.basic_inference --backend engine" in err and "Traceback" not in err


class EchoBackend:
    """A stand-in for ch05's engine: what a later chapter registers through ``extra_backends``."""

    name = "engine"

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        return [GenerationResponse(r.prompt.upper(), 3, 2, 0.01, "stop") for r in requests]

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        yield from request.prompt.split()

    def close(self) -> None:
        pass


def test_a_later_chapter_registers_its_backend_through_extra_backends(capsys):
    rc = main(["--backend", "engine", "--smoke"], extra_backends={"engine": lambda args: EchoBackend()})
    out = capsys.readouterr().out
    assert rc == 0
    assert FRANCE_PROMPT.upper() in out
    data = parse_json_line(out)
    assert data["backend"] == "engine" and data["batch_size"] == 2 and data["stream_pieces"] == 6


@pytest.mark.vllm
def test_vllm_backend_answers_like_transformers(vllm_server, hf_backend):
    from ch03_env.vllm_backend import VLLMServerBackend

    backend = VLLMServerBackend(base_url=vllm_server)
    reqs = [GenerationRequest(FRANCE_PROMPT, 16), GenerationRequest(OTHER, 16)]
    got = [r.text for r in backend.generate(reqs)]
    want = [r.text for r in hf_backend.generate(reqs)]
    assert got[0].strip() == FRANCE_ANSWER
    assert got == want
    assert "".join(backend.stream(reqs[0])).strip() == FRANCE_ANSWER
