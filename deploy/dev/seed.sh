# Procfile.dev's `seed`: the development accounts and rules, added with the operator commands
# once the stand-ins listen. Then it stays up, because honcho stops every process when one exits.
set -eu
. deploy/dev/env.sh
dev_wait_stores
dev_wait "$DEV_GMAIL_PORT" "$DEV_OAUTH_PORT"

# account EMAIL USER_UUID REFRESH_TOKEN [OPTION]: a Gmail account; its refresh token goes in on
# stdin, and the fake token endpoint checks it (carol's is revoked: stored unchecked).
account() {
    printf '%s\n' "$3" | crawler accounts add "$1" --user-uuid "$2" --refresh-token-stdin ${4:-}
}

account alice@example.com alice 1//dev-alice
account bob@example.com bob 1//dev-bob
account carol@example.com carol 1//dev-carol --no-verify # revoked in oauth.json
crawler rules add --user-uuid alice # every attachment
crawler rules add --user-uuid bob --filename '*.pdf'
crawler rules add --user-uuid carol
echo "seeded alice (every attachment), bob (*.pdf) and carol (grant revoked: auth_failed)"

exec tail -f /dev/null
