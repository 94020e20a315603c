#!/usr/bin/env bash
# Builds the demo's algorithm images FROM the loopback node base image and pushes them:
#   127.0.0.1:5050/pht/descriptive-stats:1
#   127.0.0.1:5050/pht/logistic-regression:1
#   127.0.0.1:5050/pht/pooled-quantiles:1
#
#   bash demo/build-algorithm-images.sh [--registry HOST:PORT] [--base IMAGE] [--tag TAG] [--no-push]
#   bash demo/build-algorithm-images.sh --sync-only
#
# Needs the Docker engine, the registry and the base image that `bash scripts/infra.sh up` provides.
#
# Each algorithm folder is its own build context, so a folder copied as a template builds with a
# plain `docker build .`. That is why the SPARQL results parser is copied into every folder rather
# than shared through a wider context: the copies are refreshed here from algorithms/lib (the one
# you edit) on every build, and test/demo/algorithms.test.ts fails when they drift.
# --sync-only refreshes the copies and stops.
#
# Environment: PHT_IMAGE_REGISTRY (default 127.0.0.1:5050), DOCKER (default /usr/bin/docker, the
# client that matches Debian's engine; another docker may come first on PATH).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ALGORITHMS=(descriptive-stats logistic-regression pooled-quantiles)
DOCKER=${DOCKER:-/usr/bin/docker}
registry=${PHT_IMAGE_REGISTRY:-127.0.0.1:5050}
base=
tag=1
push=1
sync_only=0

die() { printf 'build-algorithm-images: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'build-algorithm-images: %s\n' "$*"; }

while (($#)); do
  case $1 in
    --registry) registry=${2:?--registry needs HOST:PORT}; shift 2 ;;
    --base) base=${2:?--base needs an image}; shift 2 ;;
    --tag) tag=${2:?--tag needs a tag}; shift 2 ;;
    --no-push) push=0; shift ;;
    --sync-only) sync_only=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (try --help)" ;;
  esac
done
base=${base:-$registry/pht/node-base:20}

for name in "${ALGORITHMS[@]}"; do
  cp "$ROOT/algorithms/lib/sparql-results.js" "$ROOT/algorithms/$name/sparql-results.js"
done
say "refreshed sparql-results.js in ${ALGORITHMS[*]}"
((sync_only)) && exit 0

# No public registry is reachable from here, and none may be named: the base must be ours.
[[ $base =~ ^(127\.[0-9.]+|localhost)(:[0-9]+)?/ ]] || die "base image $base is not on a loopback registry"
"$DOCKER" version >/dev/null 2>&1 || die "the Docker engine does not answer (bash scripts/infra.sh up)"
if ! "$DOCKER" image inspect "$base" >/dev/null 2>&1; then
  say "pulling $base…"
  "$DOCKER" pull "$base" >/dev/null || die "base image $base is missing (bash scripts/infra.sh up builds it)"
fi

for name in "${ALGORITHMS[@]}"; do
  image="$registry/pht/$name:$tag"
  say "building $image FROM $base"
  "$DOCKER" build --quiet --build-arg "BASE=$base" -t "$image" "$ROOT/algorithms/$name" >/dev/null
  if ((push)); then
    "$DOCKER" push "$image" >/dev/null
    digest=$("$DOCKER" image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$image" | grep -F "$registry/pht/$name@" | head -n 1)
    say "pushed $image ($digest)"
  fi
done
