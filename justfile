# Recipes the README and CI use. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

bffctl := "target/debug/bffctl"

# List the recipes.
default:
    @just --list

# Install what the host lacks: redis-server (nodes, the local redis image), wrk and nginx (benchmark,
# the deployment's load balancer), docker-compose (the deployment in deploy/compose/), openssl (the
# certificates of the Redis TLS test), chromium and chromium-driver and a font (the browser tests of
# the example app; once, about 100 MB from Debian);
# kubernetes-validate from PyPI (deploy/k8s/, offline schemas; a few seconds).
# As root through apt-get; otherwise one line saying what to install, and exit 2 before any build.
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v kubernetes-validate >/dev/null; then
        echo "setup: installing kubernetes-validate (pip)"
        python3 -m pip install -q kubernetes-validate
        hash -r
    fi
    if ! command -v promtool >/dev/null; then
        # promtool only (48 MB), for `just alert-rules`: taken out of Debian's prometheus package
        # (96 MB installed, and a server that would start as a service) with apt-get download.
        if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
            echo "setup: this host lacks promtool: put it on PATH (Debian/Ubuntu: the prometheus package), then run this again" >&2
            exit 2
        fi
        echo "setup: installing promtool (from Debian's prometheus package)"
        work="$(mktemp -d)"
        (cd "$work" && apt-get download -qq prometheus 2>/dev/null || { apt-get update -qq && apt-get download -qq prometheus; })
        dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -xO ./usr/bin/promtool > /usr/local/bin/promtool
        chmod 755 /usr/local/bin/promtool
        rm -rf "$work"
        hash -r
    fi
    missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v chromium >/dev/null || missing+=(chromium)
    command -v chromedriver >/dev/null || missing+=(chromium-driver)
    [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
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

# The previous release, bff 0.1.0 (tag v0.1.0; named by its commit, which every clone of main
# has, tags or not), built once from its own source into target/previous-release/bff-0.1.0 for the
# rolling-upgrade scenarios. A second run finds it and builds nothing. It shares target/ with this
# build: its dependencies are this build's (same versions, same features), so only its own `bff`
# crate compiles; its binary, uplifted to target/debug/bff, is copied away and this build's is put
# back. Needs the commit in the clone's history (not a shallow clone).
previous-release:
    #!/usr/bin/env bash
    set -euo pipefail
    commit=35917ed7fdcfa5b999e58157ab80be0cc94fbff9
    out=target/previous-release
    if [ -x "$out/bff-0.1.0" ]; then
        echo "previous-release: $out/bff-0.1.0 is built"
        exit 0
    fi
    git cat-file -e "$commit^{commit}" 2>/dev/null || { echo "previous-release: commit $commit (v0.1.0) is not in this clone's history (a shallow clone?): fetch it (git fetch --unshallow)" >&2; exit 2; }
    rm -rf "$out/src"
    mkdir -p "$out/src"
    git archive "$commit" | tar -x -C "$out/src"
    started=$(date +%s)
    cargo build --manifest-path "$out/src/Cargo.toml" --workspace --bin bff --locked --target-dir target
    cp target/debug/bff "$out/bff-0.1.0.part"
    mv "$out/bff-0.1.0.part" "$out/bff-0.1.0"
    cargo build --workspace --bin bff
    echo "previous-release: $("$out/bff-0.1.0" --version) built from $commit in $(( $(date +%s) - started )) s"

# The whole test suite: unit, integration (real redis-server, real bff processes, real containers),
# every scenario (processes; the rolling upgrade from and roll-back to bff 0.1.0, which
# `previous-release` builds once), the restart-survival scenario, the link and node faults, a Redis
# that loses its data and the rolling upgrade from 0.1.0 and a Redis Cluster primary SIGKILLed in containers (0.1.0's image under its own
# tag), the manual built and its links checked (`just docs`), a one-second benchmark smoke run, a
# 60 s soak under faults (about 75 s with its set-up), the compose deployment verified through the
# manual's tutorial (`just tutorial`: what `just deploy-verify` checks, plus a screenshot of the
# report), and a third-party gateway (mod_auth_openidc) verified.
test: setup build previous-release
    cargo test --workspace
    just docs
    {{bffctl}} run scenarios/ --backend process --report junit target/scenarios.xml
    {{bffctl}} soak --duration 60s --rate 200/s --users 100 --fault-every 15s --sample-every 2s
    {{bffctl}} run scenarios/login-me-restart.toml --backend docker --report junit target/scenarios-docker.xml
    {{bffctl}} run scenarios/redis-link-faults.toml --backend docker --report junit target/scenarios-docker-faults.xml
    {{bffctl}} run scenarios/node-cut-off.toml --backend docker --report junit target/scenarios-docker-cut-off.xml
    {{bffctl}} run scenarios/redis-restart-data-lost.toml --backend docker --report junit target/scenarios-docker-data-lost.xml
    {{bffctl}} run scenarios/rolling-upgrade.toml --backend docker --bff-image bff-local/bff:previous-release --report junit target/scenarios-docker-upgrade.xml
    # Redis Cluster in containers (3 primaries, 3 replicas): a primary SIGKILLed under load; about
    # 30 s with its set-up on a loaded 2-core machine (the processes run every cluster scenario above).
    {{bffctl}} run scenarios/redis-cluster-kill-primary.toml --backend docker --report junit target/scenarios-docker-cluster.xml
    {{bffctl}} bench --smoke --out target/bench-smoke
    just k8s-validate
    just alert-rules
    just tutorial
    just third-party-verify

# The example Prometheus alert rules (deploy/prometheus/) against their unit tests, offline
# (promtool, installed by `setup`). Under a second.
alert-rules: setup
    promtool check rules deploy/prometheus/bff-alerts.yml
    promtool test rules deploy/prometheus/bff-alerts.test.yml

# The Kubernetes manifests (deploy/k8s/) against the Kubernetes schemas, offline (schemas bundled
# with kubernetes-validate; no cluster). Under a second.
k8s-validate: setup
    kubernetes-validate --strict --quiet deploy/k8s/*.yaml

# The benchmark (release build): gateway next to a direct upstream and nginx; writes bench/results/*.json.
bench *ARGS: setup
    cargo build --release -p bff -p bffctl
    target/release/bffctl bench --bff-binary target/release/bff {{ARGS}}

# The manual (docs/, mdBook) into target/book/: the configuration reference regenerated from the
# gateway's key table (`bff --config-reference`), then every internal link checked
# (tools/check-doc-links.py: the built pages' links and anchors, and the README's and chapters'
# links to files). mdbook is installed when missing (`cargo install --locked`, without its default
# features: no server, watcher or search index; about 2.5 min once on a 2-core machine).
# Depends on `build` (the workspace's binaries, as CI builds them: `cargo build -p bff` alone
# would unify features differently and rebuild the dependencies, minutes on 2 cores).
docs: build
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v mdbook >/dev/null || ! mdbook --version | grep -q '^mdbook v0\.5\.'; then
        echo "docs: installing mdbook 0.5.4 (cargo install --locked, no default features)"
        cargo install --locked mdbook --version 0.5.4 --no-default-features
    fi
    target/debug/bff --config-reference > docs/src/gateway/configuration-keys.md
    mdbook build docs
    python3 tools/check-doc-links.py

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    just circles
    cargo clippy --workspace --all-targets -- -D warnings

# Each circle is printed with the names that tie it (Python 3, standard library only; instant).
# Fail when modules of one crate (bff/src, harness/src, bffctl/src) import each other in a circle.
circles:
    python3 tools/import-circles.py

compose := "docker-compose -p bffdeploy -f deploy/compose/docker-compose.yml"

# Start the compose deployment (deploy/compose/): 3 bff replicas, Redis with AOF, nginx, the mock issuer.
deploy-up: setup build
    {{bffctl}} images --deploy
    {{compose}} up -d

# Stop the compose deployment and remove its containers, network and volume.
deploy-down:
    {{compose}} down -v --remove-orphans

# verify-scaling --target against the compose deployment behind nginx must PASS; with node-2
# missing its Redis URL it must FAIL naming node-2. Everything is removed afterwards.
deploy-verify: deploy-up
    #!/usr/bin/env bash
    set -euo pipefail
    trap '{{compose}} -f deploy/compose/no-redis-on-node-2.yml down -v --remove-orphans >/dev/null 2>&1' EXIT
    verify() {
        {{bffctl}} verify-scaling --target http://127.0.0.1:18080             --node node-1=http://127.0.0.1:18081 --node node-2=http://127.0.0.1:18082 --node node-3=http://127.0.0.1:18083             --restart-cmd 'docker restart bffdeploy-{node}' --ops-token demo-ops-token-0123456789abcdef "$@"
    }
    verify --report junit target/deploy-verify.xml
    {{compose}} -f deploy/compose/no-redis-on-node-2.yml up -d
    set +e
    out=$(verify 2>&1); code=$?
    set -e
    echo "$out" | tail -3
    if [ "$code" -ne 1 ] || ! grep -q "store (node-2)" <<<"$out"; then
        echo "deploy-verify: the deployment with node-2 on its own store was not failed with node-2 named (exit $code)" >&2
        exit 1
    fi
    echo "deploy-verify: the broken deployment FAILED with node-2 named, as it must"
    {{compose}} -f deploy/compose/no-redis-on-node-2.yml down -v --remove-orphans >/dev/null 2>&1
    left=$(docker ps -a --filter name=bffdeploy --format '{{{{.Names}}' ; docker network ls --filter name=bffdeploy --format '{{{{.Name}}' ; docker volume ls --filter name=bffdeploy --format '{{{{.Name}}')
    if [ -n "$left" ]; then echo "deploy-verify: left behind: $left" >&2; exit 1; fi
    echo "deploy-verify: no container, network or volume left"

# The manual's tutorial (docs/src/tutorial.md) run as written (tools/run-tutorial.py): the compose
# deployment up, verify-scaling --target PASSes, node-2 redeployed without Redis, the FAIL names
# it, headless Chromium takes a screenshot of the HTML report (target/tutorial/fail.png), and
# nothing of the deployment is left. Uses the compose deployment's fixed names and ports.
tutorial: setup build
    python3 tools/run-tutorial.py

# Bring up a cluster (e.g. `just up --nodes 3 --backend process`).
up *ARGS: setup build
    {{bffctl}} up {{ARGS}}

# The restart-survival test on a fresh cluster: log in, me, restart every node, me again.
verify *ARGS: setup build
    {{bffctl}} verify-scaling {{ARGS}}

# Everything CI runs.
ci: lint test

# Another gateway, deployed as its users deploy it (deploy/third-party/mod_auth_openidc/): Apache's
# mod_auth_openidc (Debian's package) as three replicas sharing sessions through one Redis, nginx in
# front (a random replica per request), the mock issuer. verify-scaling --target must PASS; with
# node-2 keeping its sessions node-local (OIDCCacheType shm), and with node-2 on another
# OIDCCryptoPassphrase, it must FAIL naming node-2. Everything started is stopped afterwards; the
# logs stay in target/third-party/mod_auth_openidc/. One iteration per user: a second login of the
# same virtual user finds its session and is answered 200, not a redirect to the issuer. 100 users:
# a replica that does not know a session clears its cookie, so later reads elsewhere fail too, and
# with few users the matrix can blame another pair of nodes by chance.
third-party-verify: setup
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -e /usr/lib/apache2/modules/mod_auth_openidc.so ]; then
        if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
            echo "third-party-verify: this host lacks mod_auth_openidc: install it (sudo apt-get install -y apache2 libapache2-mod-auth-openidc), then run this again" >&2
            exit 2
        fi
        echo "third-party-verify: installing apache2 libapache2-mod-auth-openidc (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends apache2 libapache2-mod-auth-openidc >/dev/null
    fi
    cargo build -p bffctl
    run="$PWD/deploy/third-party/mod_auth_openidc/run.sh"
    trap '"$run" down' EXIT
    verify() {
        {{bffctl}} verify-scaling --target http://127.0.0.1:18190             --node node-1=http://127.0.0.1:18191 --node node-2=http://127.0.0.1:18192 --node node-3=http://127.0.0.1:18193             --restart-cmd "'$run' restart {node}" --ready-path /ready             --gateway mod-auth-openidc "$@"
    }
    "$run" up --variant ok
    verify --report junit target/third-party-verify.xml
    "$run" down
    for variant in node-local-cache other-secret; do
        "$run" up --variant "$variant"
        set +e
        out=$(verify 2>&1); code=$?
        set -e
        grep -E '^(Diagnosis|PASS|FAIL)' <<<"$out" || true
        if [ "$code" -ne 1 ] || ! grep -qE '^Diagnosis: (node-2 |sessions node-2 )' <<<"$out"; then
            echo "third-party-verify: the $variant deployment was not failed with node-2 named (exit $code)" >&2
            exit 1
        fi
        echo "third-party-verify: $variant FAILED with node-2 named, as it must"
        "$run" down
    done
