#!/bin/sh
# Entry point of the facegate image: starts the app named by the first argument
# (gateway, inference-worker or matcher) as this container's main process, so
# it receives SIGTERM from `docker stop` directly. Further arguments go to the app.
set -eu

app_root=$(cd "$(dirname "$0")/../.." && pwd)
app="${1:-}"

case "$app" in
  gateway | matcher) ;;
  inference-worker)
    # Only the inference worker runs the models. Replicas share one models
    # volume, and fetch.mjs names its temporary file after the process id,
    # which is often the same in every container. The lock lets one replica
    # fetch while the others wait, then find the files present and verified.
    models_dir="${MODELS_DIR:-$app_root/models/files}"
    mkdir -p "$models_dir"
    flock "$models_dir/.fetch.lock" node "$app_root/models/fetch.mjs"
    ;;
  *)
    echo "entrypoint: invalid app '$app'; expected gateway, inference-worker or matcher" >&2
    exit 64
    ;;
esac
shift

# The Node flags that the app's package.json lists under facegate.nodeFlags, as npm start uses.
flags=$(node -p "(require('$app_root/apps/$app/package.json').facegate?.nodeFlags ?? []).join(' ')")

# Under SCHED_BATCH where chrt may set it, as npm start does (see scripts/app-command.mjs):
# its wake-ups then do not preempt the inference threads of a container on the same cores.
if [ "${FACEGATE_SCHED_BATCH:-}" != off ] && chrt --batch 0 true 2>/dev/null; then
  # shellcheck disable=SC2086 # each flag is a word of its own
  exec chrt --batch 0 node $flags --enable-source-maps "$app_root/apps/$app/dist/src/main.js" "$@"
fi
# shellcheck disable=SC2086 # each flag is a word of its own
exec node $flags --enable-source-maps "$app_root/apps/$app/dist/src/main.js" "$@"
