#!/bin/sh
# Prepare the embedded model into the /data volume if needed (a no-op after the first start), then serve
# (book 3.4). Flags pass through to the server: `docker run ... llmic:cpu --max-num-seqs 8`.
# LLMIC_HOST=0.0.0.0 is the container's interface; publish the port on the host's 127.0.0.1 (compose does).
set -eu
if [ -z "${LLMIC_MODEL:-}" ]; then
  python -m common.models prepare
fi
exec python -m ch08_production.server "$@"
