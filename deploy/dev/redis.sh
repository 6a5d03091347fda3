# Procfile.dev's `redis`: the embedded Redis (fakeredis) on DEV_REDIS_PORT. When DEV_REDIS_URL names
# a real Redis, it serves nothing and stays up, because honcho stops every process when one exits.
set -eu
. deploy/dev/env.sh

if [ -n "${DEV_REDIS_URL:-}" ]; then
    echo "no embedded Redis: the processes use the Redis that DEV_REDIS_URL names"
    exec tail -f /dev/null
fi
exec crawler embedded-redis --port "$DEV_REDIS_PORT"
