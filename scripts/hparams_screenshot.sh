#!/usr/bin/env bash
# A screenshot of a run's HParams tab in TensorBoard, to check it as a person sees it: the keys the
# sweep varies and the metrics, without scrolling (issue 14).
#   scripts/hparams_screenshot.sh RUN_DIR [OUT.png]     e.g. RUN_DIR=runs/quickstart
# Serves RUN_DIR/tensorboard with `xsweep tensorboard` on 127.0.0.1 (a free port), waits until
# TensorBoard has read the trials' HParams, takes the screenshot with headless Chromium
# (Debian: `apt-get install -y chromium`), then stops the server it started.
#   PORT  port to serve on (default: a free one)
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 RUN_DIR [OUT.png]" >&2
  exit 2
fi
RUN_DIR=$1
OUT=$(realpath -m "${2:-hparams.png}")
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=$REPO/.venv/bin/python
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
  echo "hparams_screenshot: no chromium on PATH; install it: apt-get install -y chromium" >&2
  exit 1
fi
if [ ! -d "$RUN_DIR/tensorboard" ]; then
  echo "hparams_screenshot: no TensorBoard logs in $RUN_DIR/tensorboard (pass a run directory)" >&2
  exit 1
fi
PORT=${PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
URL="http://127.0.0.1:$PORT/"

# Job control puts the server in a process group of its own: `xsweep tensorboard` and the
# TensorBoard process it starts stop together, and nothing else does.
set -m
"$PYTHON" -m xsweep tensorboard "$RUN_DIR" --host 127.0.0.1 --port "$PORT" >/dev/null &
SERVER=$!
set +m
PROFILE=$(mktemp -d)
stop() {
  kill -TERM -- "-$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  rm -rf "$PROFILE"
}
trap stop EXIT

# TensorBoard answers before it has read the event files: wait for the trials' HParams sessions.
"$PYTHON" - "$URL" "$SERVER" <<'EOF'
import json, sys, time, urllib.request

url, server = sys.argv[1], int(sys.argv[2])


def alive(pid: int) -> bool:
    """Whether the process runs (an exited one that bash has not reaped yet is a zombie, "Z")."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
statuses = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
body = json.dumps({"experimentName": "", "allowedStatuses": statuses, "colParams": [], "startIndex": 0,
                   "sliceSize": 1000}).encode()
deadline = time.monotonic() + 90
while time.monotonic() < deadline:
    try:
        request = urllib.request.Request(url + "data/plugin/hparams/session_groups", data=body,
                                         headers={"Content-Type": "application/json"})
        with opener.open(request, timeout=5) as response:
            groups = json.load(response).get("sessionGroups", [])
        if groups:
            print(f"hparams_screenshot: TensorBoard lists {len(groups)} trial(s) at {url}")
            sys.exit(0)
    except OSError:
        if not alive(server):
            sys.exit(f"hparams_screenshot: the TensorBoard server stopped before answering at {url}")
    time.sleep(1)
sys.exit(f"hparams_screenshot: TensorBoard at {url} listed no HParams session within 90 s")
EOF

"$CHROMIUM" --headless --no-sandbox --disable-gpu --user-data-dir="$PROFILE" --window-size=1500,1000 \
  --virtual-time-budget=15000 --screenshot="$OUT" "${URL}#hparams" 2>/dev/null
echo "hparams_screenshot: wrote $OUT"
