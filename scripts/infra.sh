#!/usr/bin/env bash
# The real infrastructure PHT's end-to-end tests and demo need on one Debian 12 machine:
# the Docker engine, an image registry on loopback, a base image built from the host's own node
# (no public registry is reachable), and Virtuoso installed for one end-to-end test.
#
#   bash scripts/infra.sh up      install what is missing, start what is not running, build the base image
#   bash scripts/infra.sh down    stop what `up` started (packages stay installed)
#   bash scripts/infra.sh status  show what is there; exit code 0 when everything is ready
#
# `up` and `down` are idempotent. `up` only starts a daemon when none is running, and `down` only
# stops daemons whose PID `up` recorded in the state dir, so a dockerd started by someone else is
# never touched.
#
# Environment:
#   PHT_INFRA_DIR        state dir: PIDs, logs, registry storage (default /var/tmp/pht-infra)
#   PHT_IMAGE_REGISTRY   host:port of the image registry (default 127.0.0.1:5050; keep it on
#                        127.0.0.0/8, which the engine treats as an insecure registry without config)
set -euo pipefail

STATE_DIR=${PHT_INFRA_DIR:-/var/tmp/pht-infra}
REGISTRY=${PHT_IMAGE_REGISTRY:-127.0.0.1:5050}
BASE_REPO=pht/node-base
BASE_TAG=20
BASE_IMAGE="$REGISTRY/$BASE_REPO:$BASE_TAG"
# Debian's client matches the engine (20.10); another, newer docker may come first on PATH.
DOCKER=/usr/bin/docker
# chromium: the real browser of the dashboard tests (test/e2e/dashboard), driven by playwright-core.
# postgresql and nginx: the registry suite on PostgreSQL and several registries behind a load
# balancer (scripts/test-postgres.sh starts a throwaway cluster; the packages' own services are not used).
PACKAGES=(docker.io docker-registry virtuoso-opensource iptables chromium postgresql nginx)

say() { printf 'infra: %s\n' "$*"; }
die() { printf 'infra: error: %s\n' "$*" >&2; exit 1; }

# PID of a process whose command name is exactly $1, or nothing (no procps on a minimal machine).
pid_named() {
  local p
  for p in /proc/[0-9]*; do
    if [[ "$(cat "$p/comm" 2>/dev/null)" == "$1" ]]; then
      echo "${p#/proc/}"
      return 0
    fi
  done
  return 0
}

# True when the PID recorded in $STATE_DIR/$1.pid is alive and still runs command $2
# (guards against a recycled PID after a reboot or a crash).
recorded_pid_alive() {
  local file="$STATE_DIR/$1.pid" pid
  [[ -f "$file" ]] || return 1
  pid=$(cat "$file")
  [[ -n "$pid" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]]
}

# HTTP status of a GET (000 when nothing answers). Uses node's fetch: curl may not be installed.
http_status() {
  node -e '
    const [url, accept] = process.argv.slice(1);
    fetch(url, { headers: accept ? { accept } : {}, signal: AbortSignal.timeout(3000) })
      .then((r) => console.log(r.status), () => console.log("000"));
  ' "$1" "${2:-}"
}

docker_ready() { "$DOCKER" version >/dev/null 2>&1; }
registry_ready() { [[ "$(http_status "http://$REGISTRY/v2/")" == 200 ]]; }
base_in_registry() {
  [[ "$(http_status "http://$REGISTRY/v2/$BASE_REPO/manifests/$BASE_TAG" \
    'application/vnd.docker.distribution.manifest.v2+json')" == 200 ]]
}

# wait_for SECONDS COMMAND...: polls COMMAND every 0.2 s; false when it never succeeded.
wait_for() {
  local seconds=$1 i
  shift
  for ((i = 0; i < seconds * 5; i++)); do
    "$@" && return 0
    sleep 0.2
  done
  return 1
}

installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]; }

install_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    say "packages already installed (${PACKAGES[*]})"
    return
  fi
  say "installing ${missing[*]}…"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update && apt-get install -y "${missing[@]}"; } >"$STATE_DIR/apt.log" 2>&1 ||
    { tail -n 30 "$STATE_DIR/apt.log" >&2; die "apt-get failed (log: $STATE_DIR/apt.log)"; }
  say "installed ${missing[*]}"
}

start_dockerd() {
  local pid
  if docker_ready; then
    say "dockerd already running (pid $(pid_named dockerd))"
    return
  fi
  # A second dockerd beside a running one tears down docker0 when it stops: wait for the one
  # that exists instead (it may still be starting up).
  pid=$(pid_named dockerd)
  if [[ -n "$pid" ]]; then
    say "dockerd (pid $pid) is running but not answering yet; waiting…"
    wait_for 60 docker_ready || die "dockerd (pid $pid) does not answer; see its log"
    say "dockerd answers"
    return
  fi
  say "starting dockerd (log: $STATE_DIR/dockerd.log)…"
  # Own session and no inherited stdio: the daemon must not hold the caller's (CI's) pipes.
  # ($! is the daemon itself: setsid only forks when it is a process-group leader, which a
  # background command of a script without job control never is.)
  setsid dockerd >>"$STATE_DIR/dockerd.log" 2>&1 </dev/null &
  echo $! >"$STATE_DIR/dockerd.pid"
  if ! wait_for 60 docker_ready; then
    tail -n 20 "$STATE_DIR/dockerd.log" >&2
    die "dockerd did not become ready within 60 s"
  fi
  say "dockerd started (pid $(cat "$STATE_DIR/dockerd.pid"))"
}

start_registry() {
  if registry_ready; then
    say "image registry already answering on http://$REGISTRY/v2/"
    return
  fi
  # Not the packaged /etc/docker/registry/config.yml: it points htpasswd auth at a directory.
  mkdir -p "$STATE_DIR/registry/data"
  cat >"$STATE_DIR/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $STATE_DIR/registry/data
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
  say "starting docker-registry on $REGISTRY (log: $STATE_DIR/registry.log)…"
  setsid docker-registry serve "$STATE_DIR/registry/config.yml" >>"$STATE_DIR/registry.log" 2>&1 </dev/null &
  echo $! >"$STATE_DIR/registry.pid"
  if ! wait_for 20 registry_ready; then
    tail -n 20 "$STATE_DIR/registry.log" >&2
    die "docker-registry did not answer on http://$REGISTRY/v2/ within 20 s"
  fi
  say "image registry started (pid $(cat "$STATE_DIR/registry.pid"))"
}

# A rootfs holding only the host's node binary and the libraries it links, imported as an image.
import_base_image() {
  local node rootfs="$STATE_DIR/rootfs" lib
  node=$(readlink -f "$(command -v node)")
  say "building $BASE_IMAGE from $node ($(node --version))…"
  [[ "$(node --version)" == "v$BASE_TAG."* ]] ||
    say "warning: the host's node is $(node --version), but the image is tagged :$BASE_TAG"
  rm -rf "$rootfs"
  mkdir -p "$rootfs/usr/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp"
  chmod 1777 "$rootfs/tmp"
  cp "$node" "$rootfs/usr/bin/node"
  # ldd prints "name => /path (addr)" and, for the loader, "/path (addr)".
  for lib in $(ldd "$node" | grep -o '/[^ ]*'); do
    cp -L --parents "$lib" "$rootfs/"
  done
  if [[ -d /etc/ssl/certs ]]; then cp -rL /etc/ssl/certs/. "$rootfs/etc/ssl/certs/" 2>/dev/null || true; fi
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' \
    >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$rootfs/etc/group"
  tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -c . |
    "$DOCKER" import -c 'ENV PATH=/usr/bin' -c 'ENTRYPOINT ["/usr/bin/node"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

ensure_base_image() {
  if base_in_registry; then
    say "$BASE_IMAGE already in the registry"
    return
  fi
  # Each import makes a new image id: reuse a local one (e.g. after the registry data was wiped).
  if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "$BASE_IMAGE exists locally"
  else
    import_base_image
  fi
  say "pushing $BASE_IMAGE…"
  "$DOCKER" push "$BASE_IMAGE" >"$STATE_DIR/push.log" 2>&1 ||
    { cat "$STATE_DIR/push.log" >&2; die "push of $BASE_IMAGE failed"; }
  say "$BASE_IMAGE pushed ($(("$("$DOCKER" image inspect -f '{{.Size}}' "$BASE_IMAGE")" / 1000000)) MB)"
}

# stop_recorded NAME COMMAND: stops the daemon `up` recorded, TERM first, KILL after 40 s.
stop_recorded() {
  local name=$1 comm=$2 pid i
  if ! recorded_pid_alive "$name" "$comm"; then
    rm -f "$STATE_DIR/$name.pid"
    say "$name: nothing started by infra.sh is running"
    return
  fi
  pid=$(cat "$STATE_DIR/$name.pid")
  say "stopping $name (pid $pid)…"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    recorded_pid_alive "$name" "$comm" || break
    sleep 0.2
  done
  if recorded_pid_alive "$name" "$comm"; then
    say "$name did not stop within 40 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE_DIR/$name.pid"
  say "$name stopped"
}

cmd_up() {
  mkdir -p "$STATE_DIR"
  install_packages
  start_dockerd
  start_registry
  ensure_base_image
  say "ready: docker $("$DOCKER" version -f '{{.Server.Version}}'), registry http://$REGISTRY, base image $BASE_IMAGE"
}

cmd_down() {
  # Registry first: it holds nothing dockerd needs.
  stop_recorded registry docker-registry
  stop_recorded dockerd dockerd
}

cmd_status() {
  local ok=0 pkg owner
  for pkg in "${PACKAGES[@]}"; do
    if installed "$pkg"; then
      say "package $pkg: installed"
    else
      say "package $pkg: missing"
      ok=1
    fi
  done
  if docker_ready; then
    owner="started by someone else"
    recorded_pid_alive dockerd dockerd && owner="started by infra.sh, pid $(cat "$STATE_DIR/dockerd.pid")"
    say "dockerd: running ($owner)"
  else
    say "dockerd: not answering"
    ok=1
  fi
  if registry_ready; then
    owner="started by someone else"
    recorded_pid_alive registry docker-registry && owner="started by infra.sh, pid $(cat "$STATE_DIR/registry.pid")"
    say "registry http://$REGISTRY: running ($owner)"
    if base_in_registry; then say "base image $BASE_IMAGE: in the registry"; else
      say "base image $BASE_IMAGE: missing"
      ok=1
    fi
  else
    say "registry http://$REGISTRY: not answering"
    ok=1
  fi
  say "state dir: $STATE_DIR"
  return "$ok"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *)
    echo "usage: bash scripts/infra.sh up|down|status" >&2
    exit 2
    ;;
esac
