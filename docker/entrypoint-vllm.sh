#!/bin/sh
# Start vLLM's OpenAI-compatible server on the model mounted at $MODEL (book 3.4). Extra arguments pass
# through, e.g. `docker run ... llmic-vllm:gpu --max-model-len 4096 --gpu-memory-utilization 0.85`,
# and so do the words of $EXTRA_ARGS, after them (compose sets it from VLLM_EXTRA_ARGS).
# 0.0.0.0 is the container's own interface: publish the port on 127.0.0.1 of the host (compose does).
set -eu
if [ ! -f "$MODEL/config.json" ]; then
  echo "no model at $MODEL: mount a Hugging Face folder there (-v <folder-or-volume>:/models) or set MODEL." >&2
  exit 2
fi
# EXTRA_ARGS is split into words on purpose (so no quotes inside it).
# shellcheck disable=SC2086
exec python3 -m vllm.entrypoints.openai.api_server \
  --host 0.0.0.0 --port "$PORT" --model "$MODEL" --served-model-name "$SERVED_MODEL_NAME" "$@" ${EXTRA_ARGS:-}
