#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback for the test suite (the unit-postgres project and the
# multi-process drills), without systemd: Debian's server binaries run as the `postgres` user.
#
#   bash scripts/test-postgres.sh up     install postgresql if missing, start a cluster, print its URL
#   bash scripts/test-postgres.sh down   stop the cluster `up` started and remove its files
#
# Environment: PHT_TEST_PG_DIR (default /var/tmp/pht-test-pg), PHT_TEST_PG_PORT (default 25432: below the ephemeral port range, so that no outgoing connection can hold it when the cluster starts).
# The tests read the URL from PHT_TEST_DATABASE_URL: `export PHT_TEST_DATABASE_URL=$(bash scripts/test-postgres.sh up)`.
set -euo pipefail

DIR=${PHT_TEST_PG_DIR:-/var/tmp/pht-test-pg}
PORT=${PHT_TEST_PG_PORT:-25432}

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
as_postgres() { if [[ $(id -u) == 0 ]]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }

case "${1:-}" in
  up)
    if [[ -z "$(bindir)" ]]; then
      # The package's own cluster (port 5432) is not used; ours lives in $DIR.
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
    fi
    BIN=$(bindir)
    if [[ ! -f "$DIR/data/PG_VERSION" ]]; then
      rm -rf "$DIR"
      mkdir -p "$DIR/sock"
      [[ $(id -u) == 0 ]] && chown -R postgres:postgres "$DIR"
      as_postgres "$BIN/initdb -D $DIR/data -U postgres -A trust --no-sync > $DIR/initdb.log 2>&1"
    fi
    if ! as_postgres "$BIN/pg_ctl -D $DIR/data status" > /dev/null 2>&1; then
      # A test cluster: speed over durability. Its log goes to a file, never to the caller's output.
      as_postgres "$BIN/pg_ctl -D $DIR/data -l $DIR/pg.log -w -t 60 start -o '-p $PORT -k $DIR/sock -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c full_page_writes=off'" > /dev/null
    fi
    # A cluster already running may have been started on another port (PHT_TEST_PG_PORT): give the
    # port it listens on (postmaster.pid's fourth line), not the one asked for.
    RUNNING_PORT=$(sed -n 4p "$DIR/data/postmaster.pid" 2> /dev/null || true)
    echo "postgres://postgres@127.0.0.1:${RUNNING_PORT:-$PORT}/postgres"
    ;;
  down)
    BIN=$(bindir)
    if [[ -n "$BIN" && -f "$DIR/data/PG_VERSION" ]]; then
      as_postgres "$BIN/pg_ctl -D $DIR/data -m fast -w stop" > /dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
    ;;
  *)
    echo "usage: bash scripts/test-postgres.sh up|down" >&2
    exit 2
    ;;
esac
