"""Chat-template prompts: the same text the model saw in training, built by its own template.

Instruct models answer well only when the prompt is wrapped the way they were tuned
(``<|im_start|>user ... <|im_end|><|im_start|>assistant``). Every chapter builds prompts through here so
a reader swapping ``--model`` gets that model's template for free.
"""

from __future__ import annotations

from collections.abc import Sequence

Message = dict[str, str]

FRANCE_PROMPT = "What is the capital of France?"
FRANCE_ANSWER = "The capital of France is Paris."
DEMO_PROMPTS = (FRANCE_PROMPT, "Name three primary colors.")


def as_messages(prompt: str | Sequence[Message], system: str | None = None) -> list[Message]:
    """A user string (or a message list) as a message list, with an optional system message first."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = [dict(m) for m in prompt]
        for m in messages:
            if set(m) < {"role", "content"} or m.get("role") not in {"system", "user", "assistant", "tool"}:
                raise ValueError(f"each message needs a role (system/user/assistant) and content, got {m!r}")
    if system is not None and (not messages or messages[0]["role"] != "system"):
        messages.insert(0, {"role": "system", "content": system})
    return messages


def chat_prompt(tokenizer, prompt: str | Sequence[Message], system: str | None = None) -> str:
    """The prompt text for a chat turn, ending where the assistant starts to speak."""
    messages = as_messages(prompt, system)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # No template (a base model): plain "role: content" lines are a reasonable, visible fallback.
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nassistant:"


def chat_ids(tokenizer, prompt: str | Sequence[Message], system: str | None = None) -> list[int]:
    """Token ids of :func:`chat_prompt` (no extra BOS: the template already has what it needs)."""
    return tokenizer(chat_prompt(tokenizer, prompt, system), add_special_tokens=False)["input_ids"]
