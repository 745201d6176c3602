# Recipes the README and CI use. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

bffctl := "target/debug/bffctl"

# List the recipes.
default:
    @just --list

# Build every crate (debug).
build:
    cargo build --workspace --bins

# Build the local Docker images (bff and redis, FROM scratch) from the debug binary.
images: build
    {{bffctl}} images --bff-binary target/debug/bff

# The whole test suite: unit, integration (real redis-server, real bff processes, real containers),
# every scenario (processes) and the seed scenario in containers, and a one-second benchmark smoke run.
test: images
    cargo test --workspace
    {{bffctl}} run scenarios/ --backend process --report junit target/scenarios.xml
    {{bffctl}} run scenarios/login-me-restart.toml --backend docker --report junit target/scenarios-docker.xml
    {{bffctl}} bench --smoke --out target/bench-smoke

# The benchmark (release build): gateway next to a direct upstream and nginx; writes bench/results/*.json.
bench *ARGS:
    cargo build --release -p bff -p bffctl
    target/release/bffctl bench --bff-binary target/release/bff {{ARGS}}

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Bring up a cluster (e.g. `just up --nodes 3 --backend process`).
up *ARGS: build
    {{bffctl}} up {{ARGS}}

# The seed's test on a fresh cluster: log in, me, restart every node, me again.
verify *ARGS: build
    {{bffctl}} verify-scaling {{ARGS}}

# Everything CI runs.
ci: lint test
