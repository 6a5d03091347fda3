# Settings of the development system (Procfile.dev); every process of it sources this file.
# Everything it talks to is a stand-in on loopback, Redis included: the embedded Redis (fakeredis)
# of Procfile.dev's `redis`, on DEV_REDIS_PORT. DEV_REDIS_URL names a real Redis to use instead
# (DEV_REDIS_URL=redis://127.0.0.1:6379/0), where the keys live under their own prefix.
#
# From the environment that runs honcho you can move the ports, the Redis prefix and the blob
# directory:  DEV_MONGO_PORT=27217 DEV_REDIS_PREFIX=mine: honcho -f Procfile.dev start

DEV_MONGO_PORT="${DEV_MONGO_PORT:-27117}"
DEV_GMAIL_PORT="${DEV_GMAIL_PORT:-1143}"
DEV_OAUTH_PORT="${DEV_OAUTH_PORT:-8085}"
DEV_REDIS_PORT="${DEV_REDIS_PORT:-6479}"

export CRAWLER_MONGODB_URL="mongodb://127.0.0.1:${DEV_MONGO_PORT}/crawler_dev"
export CRAWLER_REDIS_URL="${DEV_REDIS_URL:-redis://127.0.0.1:${DEV_REDIS_PORT}/0}"
export CRAWLER_REDIS_PREFIX="${DEV_REDIS_PREFIX:-crawler-dev:}"
export CRAWLER_BLOB_DIR="${DEV_BLOB_DIR:-var/dev/blobs}"
export CRAWLER_IMAP_HOST=127.0.0.1
export CRAWLER_IMAP_PORT="$DEV_GMAIL_PORT"
export CRAWLER_IMAP_TLS=false
export CRAWLER_OAUTH_TOKEN_URL="http://127.0.0.1:${DEV_OAUTH_PORT}/token"
export CRAWLER_OAUTH_AUTH_URL="http://127.0.0.1:${DEV_OAUTH_PORT}/auth"
# The client that deploy/dev/oauth.json's fake token endpoint knows.
export CRAWLER_OAUTH_CLIENT_ID=fake-client-id.apps.googleusercontent.com
export CRAWLER_OAUTH_CLIENT_SECRET=fake-client-secret
# Not a secret: base64 of "dev-only-key-for-the-fake-tokens". It encrypts the fakes' tokens only.
export CRAWLER_SECRET_KEY=ZGV2LW9ubHkta2V5LWZvci10aGUtZmFrZS10b2tlbnM=
# Short intervals, so that re-crawls, heartbeats and monitor checks happen while you watch.
export CRAWLER_CRAWL_INTERVAL=60
export CRAWLER_HEARTBEAT_TTL=6
export CRAWLER_MONITOR_INTERVAL=5

# dev_wait PORT...: return once something listens on each loopback port. The stand-ins start
# alongside the processes that need them, and a worker exits at once if MongoDB does not answer.
dev_wait() {
    for port in "$@"; do
        until python3 -c 'import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$port" 2>/dev/null; do
            sleep 0.2
        done
    done
}

# dev_wait_stores: return once MongoDB and Redis listen (a real Redis of DEV_REDIS_URL is not
# waited for: it is up already, or the process that needs it says so).
dev_wait_stores() {
    if [ -n "${DEV_REDIS_URL:-}" ]; then
        dev_wait "$DEV_MONGO_PORT"
    else
        dev_wait "$DEV_MONGO_PORT" "$DEV_REDIS_PORT"
    fi
}
