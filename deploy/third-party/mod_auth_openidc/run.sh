#!/usr/bin/env bash
# mod_auth_openidc scaled out on this machine, on loopback: one Redis, the mock OpenID provider
# (`bffctl issuer`), three Apache replicas with mod_auth_openidc sharing their sessions through
# the Redis, and nginx in front sending each request to a random replica.
#
#   run.sh up [--variant ok|node-local-cache|other-secret]
#   run.sh restart NODE        NODE: node-1, node-2, node-3 (or 1, 2, 3); for --restart-cmd
#   run.sh down                stops everything `up` started (pid files); the logs stay
#
# Variants (node-2 differs, the others are as `ok`):
#   ok                everything shared: verify-scaling must PASS
#   node-local-cache  node-2 keeps its sessions in its own shared memory (OIDCCacheType shm)
#   other-secret      node-2 has another OIDCCryptoPassphrase
#
# Addresses: the load balancer http://127.0.0.1:18190, the replicas :18191-:18193 (node-1..3),
# Redis :18194, the issuer http://127.0.0.1:18195. Everything runs under RUN_DIR (default
# target/third-party/mod_auth_openidc): pid files, logs (node-N/error.log, node-N/access.log,
# nginx/, issuer.log, redis.log). BFFCTL (default target/debug/bffctl) runs the issuer.
#
# Exit codes: 0 done, 1 something did not start or stop, 2 bad arguments or a missing program.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
RUN_DIR=${RUN_DIR:-$REPO/target/third-party/mod_auth_openidc}
BFFCTL=${BFFCTL:-$REPO/target/debug/bffctl}
APACHE=${APACHE:-/usr/sbin/apache2}
NGINX=${NGINX:-/usr/sbin/nginx}
# How long each component may take to answer after it was started (seconds).
START_TIMEOUT=${START_TIMEOUT:-30}
# How long a stopped component may take to exit before it is killed (seconds).
STOP_TIMEOUT=${STOP_TIMEOUT:-15}

HOST=127.0.0.1
PUBLIC_PORT=18190
NODE_PORTS=(18191 18192 18193)
REDIS_PORT=18194
ISSUER_PORT=18195
PUBLIC_URL=http://$HOST:$PUBLIC_PORT
ISSUER_URL=http://$HOST:$ISSUER_PORT
CLIENT_ID=mod-auth-openidc

say() { echo "run.sh: $*" >&2; }
fail() { say "$*"; exit 1; }
usage() {
    say "usage: run.sh up [--variant ok|node-local-cache|other-secret] | restart NODE | down"
    exit 2
}

# Polls `check ARGS…` until it succeeds or `START_TIMEOUT` seconds pass; fails naming `what`
# and the log to read.
wait_until() {
    local what=$1 log=$2
    shift 2
    local deadline=$((SECONDS + START_TIMEOUT))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            say "$what did not answer within ${START_TIMEOUT}s; last lines of $log:"
            tail -n 20 "$log" >&2 2>/dev/null || true
            exit 1
        fi
        sleep 0.2
    done
}

http_status() { curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$@" || true; }

# A replica answers its own name at /ready, and its /login sends a browser to the provider
# (it read the provider's metadata: the issuer is reachable from it).
node_answers() {
    local name=$1 url=$2
    local headers
    headers=$(curl -s -D - -o /dev/null --max-time 2 "$url/ready" || true)
    grep -qi "^x-bff-node: $name" <<<"$headers" || return 1
    local login
    login=$(curl -s -o /dev/null --max-time 5 -H 'Accept: text/html' -w '%{http_code} %{redirect_url}' "$url/login" || true)
    [[ $login == "302 $ISSUER_URL/authorize?"* ]]
}

# True while process `$1` runs: a process that exited but was not yet reaped (its parent, the
# one that ran `up`, is gone, and init reaps when it gets to it) counts as gone.
running() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n $state && $state != Z* ]]
}

# Stops the process of pid file `$2` (SIGTERM, then SIGKILL after STOP_TIMEOUT) and waits
# until it is gone.
stop_pidfile() {
    local what=$1 file=$2
    [ -s "$file" ] || return 0
    local pid
    pid=$(cat "$file")
    if running "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + STOP_TIMEOUT))
        while running "$pid"; do
            if ((SECONDS >= deadline)); then
                say "$what (pid $pid) still runs ${STOP_TIMEOUT}s after SIGTERM: SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                deadline=$((SECONDS + STOP_TIMEOUT))
            fi
            sleep 0.1
        done
    fi
    rm -f "$file"
}

node_index() {
    case $1 in
        node-1 | 1) echo 1 ;;
        node-2 | 2) echo 2 ;;
        node-3 | 3) echo 3 ;;
        *) say "no node $1 (node-1, node-2 or node-3)"; exit 2 ;;
    esac
}

start_redis() {
    mkdir -p "$RUN_DIR/redis"
    redis-server --bind "$HOST" --port "$REDIS_PORT" --save '' --appendonly no \
        --daemonize yes --pidfile "$RUN_DIR/redis/redis.pid" --logfile "$RUN_DIR/redis/redis.log" \
        --dir "$RUN_DIR/redis" </dev/null
    wait_until "redis" "$RUN_DIR/redis/redis.log" \
        eval '[ "$(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]'
}

start_issuer() {
    # The issuer runs in the background; its output goes to its log, so whoever ran `up` is not
    # kept waiting on an open pipe.
    BFFCTL_ISSUER_CLIENT_SECRET=$CLIENT_SECRET "$BFFCTL" issuer --listen "$HOST:$ISSUER_PORT" --host "$HOST" \
        --client-id "$CLIENT_ID" --redirect-uri "$PUBLIC_URL/redirect_uri" \
        </dev/null >"$RUN_DIR/issuer.log" 2>&1 &
    echo $! >"$RUN_DIR/issuer.pid"
    wait_until "the issuer" "$RUN_DIR/issuer.log" \
        eval '[ "$(http_status "$ISSUER_URL/.well-known/openid-configuration")" = 200 ]'
}

# The environment of replica N for the deployment's variant (httpd.conf lists the variables).
start_node() {
    local n=$1
    local name=node-$n port=${NODE_PORTS[$((n - 1))]} dir=$RUN_DIR/node-$n
    local variant cache=redis passphrase=$CRYPTO_PASSPHRASE
    variant=$(cat "$RUN_DIR/variant")
    if ((n == 2)); then
        case $variant in
            node-local-cache) cache=shm ;;
            other-secret) passphrase=$OTHER_CRYPTO_PASSPHRASE ;;
        esac
    fi
    mkdir -p "$dir/htdocs"
    cp "$HERE/htdocs/ready" "$HERE/htdocs/login.html" "$dir/htdocs/"
    local user=www-data group=www-data
    if [ "$(id -u)" -ne 0 ]; then user=$(id -un) group=$(id -gn); fi
    env NODE_NAME="$name" NODE_PORT="$port" NODE_DIR="$dir" DEPLOY_DIR="$HERE" \
        APACHE_RUN_USER="$user" APACHE_RUN_GROUP="$group" \
        PUBLIC_URL="$PUBLIC_URL" ISSUER_URL="$ISSUER_URL" \
        OIDC_CLIENT_ID="$CLIENT_ID" OIDC_CLIENT_SECRET="$CLIENT_SECRET" \
        OIDC_CRYPTO_PASSPHRASE="$passphrase" OIDC_CACHE_TYPE="$cache" REDIS_ADDR="$HOST:$REDIS_PORT" \
        "$APACHE" -d "$dir" -f "$HERE/httpd.conf" -k start </dev/null >>"$dir/error.log" 2>&1 ||
        fail "$name did not start; last lines of $dir/error.log: $(tail -n 5 "$dir/error.log")"
    wait_until "$name" "$dir/error.log" node_answers "$name" "http://$HOST:$port"
}

stop_node() {
    stop_pidfile "node-$1" "$RUN_DIR/node-$1/httpd.pid"
}

start_nginx() {
    mkdir -p "$RUN_DIR/nginx/tmp"
    "$NGINX" -p "$RUN_DIR/nginx/" -c "$HERE/nginx.conf" -e "$RUN_DIR/nginx/error.log" </dev/null ||
        fail "nginx did not start; see $RUN_DIR/nginx/error.log"
    wait_until "nginx" "$RUN_DIR/nginx/error.log" \
        eval '[ "$(http_status "$PUBLIC_URL/ready")" = 200 ]'
}

# The secrets of this deployment, made by `up` and read by `restart`.
load_secrets() {
    [ -s "$RUN_DIR/secrets.env" ] || fail "not up ($RUN_DIR/secrets.env is missing): run.sh up first"
    # shellcheck source=/dev/null
    . "$RUN_DIR/secrets.env"
}

all_ports() { echo "$PUBLIC_PORT" "${NODE_PORTS[@]}" "$REDIS_PORT" "$ISSUER_PORT"; }

listening_ports() {
    local port busy=()
    for port in $(all_ports); do
        if ss -Hltn "sport = :$port" | grep -q .; then busy+=("$port"); fi
    done
    echo "${busy[*]}"
}

cmd_up() {
    local variant=ok
    while [ $# -gt 0 ]; do
        case $1 in
            --variant) [ $# -ge 2 ] || usage; variant=$2; shift 2 ;;
            --variant=*) variant=${1#--variant=}; shift ;;
            *) usage ;;
        esac
    done
    case $variant in ok | node-local-cache | other-secret) ;; *) usage ;; esac
    local program
    for program in "$APACHE" "$NGINX" redis-server redis-cli curl ss; do
        command -v "$program" >/dev/null || { say "$program is missing"; exit 2; }
    done
    [ -e /usr/lib/apache2/modules/mod_auth_openidc.so ] ||
        { say "mod_auth_openidc is missing: apt-get install libapache2-mod-auth-openidc"; exit 2; }
    [ -x "$BFFCTL" ] || { say "$BFFCTL is missing: cargo build -p bffctl"; exit 2; }
    local busy
    busy=$(listening_ports)
    [ -z "$busy" ] || fail "ports $busy are in use (already up? run.sh down)"

    rm -rf "$RUN_DIR"
    mkdir -p "$RUN_DIR"
    chmod 755 "$RUN_DIR"
    echo "$variant" >"$RUN_DIR/variant"
    (
        umask 077
        echo "CLIENT_SECRET=$(openssl rand -hex 24)"
        echo "CRYPTO_PASSPHRASE=$(openssl rand -hex 32)"
        echo "OTHER_CRYPTO_PASSPHRASE=$(openssl rand -hex 32)"
    ) >"$RUN_DIR/secrets.env"
    load_secrets
    # A start that fails half-way stops what it started.
    trap 'say "up failed: stopping what started"; cmd_down >/dev/null 2>&1 || true' EXIT
    start_redis
    start_issuer
    local n
    for n in 1 2 3; do start_node "$n"; done
    start_nginx
    trap - EXIT
    echo "mod_auth_openidc ($variant) at $PUBLIC_URL: node-1..node-3 at http://$HOST:${NODE_PORTS[0]}..${NODE_PORTS[2]}, issuer $ISSUER_URL, redis $HOST:$REDIS_PORT"
}

cmd_restart() {
    [ $# -eq 1 ] || usage
    local n
    n=$(node_index "$1")
    load_secrets
    stop_node "$n"
    start_node "$n"
}

cmd_down() {
    [ $# -eq 0 ] || usage
    stop_pidfile nginx "$RUN_DIR/nginx/nginx.pid"
    local n
    for n in 3 2 1; do stop_node "$n"; done
    stop_pidfile issuer "$RUN_DIR/issuer.pid"
    stop_pidfile redis "$RUN_DIR/redis/redis.pid"
    # Keep the logs, drop the rest (secrets, mutexes, the pages, nginx's temporary files).
    if [ -d "$RUN_DIR" ]; then
        find "$RUN_DIR" -type f ! -name '*.log' -delete
        find "$RUN_DIR" -mindepth 1 -type d -empty -delete
    fi
    local busy
    busy=$(listening_ports)
    [ -z "$busy" ] || fail "still listening after down: ports $busy"
}

[ $# -ge 1 ] || usage
command=$1
shift
case $command in
    up) cmd_up "$@" ;;
    restart) cmd_restart "$@" ;;
    down) cmd_down "$@" ;;
    *) usage ;;
esac
