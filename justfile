# Recipes the README and CI use. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

bffctl := "target/debug/bffctl"

# List the recipes.
default:
    @just --list

# Install what the host lacks: redis-server (nodes, the local redis image), wrk and nginx (benchmark).
# As root through apt-get; otherwise one line saying what to install, and exit 2 before any build.
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
    [ ${#missing[@]} -eq 0 ] && exit 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "setup: this host lacks ${missing[*]}: install them (sudo apt-get install -y ${missing[*]}), then run this again" >&2
        exit 2
    fi
    echo "setup: installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    hash -r
    command -v redis-server >/dev/null || { echo "setup: redis-server still not on PATH after apt-get" >&2; exit 2; }

# Build every crate (debug).
build:
    cargo build --workspace --bins

# Build the local Docker images (bff and redis, FROM scratch) from the debug binary.
images: setup build
    {{bffctl}} images --bff-binary target/debug/bff

# The whole test suite: unit, integration (real redis-server, real bff processes, real containers),
# every scenario (processes) and the seed scenario in containers, and a one-second benchmark smoke run.
test: setup build
    cargo test --workspace
    {{bffctl}} run scenarios/ --backend process --report junit target/scenarios.xml
    {{bffctl}} run scenarios/login-me-restart.toml --backend docker --report junit target/scenarios-docker.xml
    {{bffctl}} bench --smoke --out target/bench-smoke

# The benchmark (release build): gateway next to a direct upstream and nginx; writes bench/results/*.json.
bench *ARGS: setup
    cargo build --release -p bff -p bffctl
    target/release/bffctl bench --bff-binary target/release/bff {{ARGS}}

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Bring up a cluster (e.g. `just up --nodes 3 --backend process`).
up *ARGS: setup build
    {{bffctl}} up {{ARGS}}

# The seed's test on a fresh cluster: log in, me, restart every node, me again.
verify *ARGS: setup build
    {{bffctl}} verify-scaling {{ARGS}}

# Everything CI runs.
ci: lint test
