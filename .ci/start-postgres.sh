#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the Optuna storage tests.
#
#   source .ci/start-postgres.sh          # exports BENCH3D2D_TEST_POSTGRES_URL (and _DIR); stops at exit
#   eval "$(.ci/start-postgres.sh)"       # the same from a script that cannot source
#   .ci/start-postgres.sh stop DIR        # stop a server started earlier (DIR = BENCH3D2D_TEST_POSTGRES_DIR)
#
# Needs Debian's `postgresql` package (initdb, pg_ctl); as root it installs it with apt-get when
# missing. The cluster lives in a temporary folder owned by the `postgres` user (initdb refuses to
# run as root), listens on 127.0.0.1 at a free port with trust authentication, and holds one empty
# database, bench3d2d_test. Sourcing never exits the caller's shell: on failure it returns 1.

_b3_pg_main() {
  local mode="${1:-start}"
  local bindir=""
  local candidate
  for candidate in "$(command -v pg_ctl 2>/dev/null)" /usr/lib/postgresql/*/bin/pg_ctl; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then bindir="$(dirname "$(readlink -f "$candidate")")"; break; fi
  done
  if [ -z "$bindir" ] && [ "$mode" = start ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "start-postgres: installing postgresql with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }
    for candidate in /usr/lib/postgresql/*/bin/pg_ctl; do
      if [ -x "$candidate" ]; then bindir="$(dirname "$candidate")"; break; fi
    done
  fi
  if [ -z "$bindir" ]; then
    echo "start-postgres: no PostgreSQL server binaries (install Debian's postgresql package)" >&2
    return 1
  fi

  # Run as the postgres user when we are root (initdb and postgres refuse root).
  local -a as_user=()
  if [ "$(id -u)" = 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
      echo "start-postgres: running as root but there is no 'postgres' user" >&2
      return 1
    fi
    if command -v runuser >/dev/null 2>&1; then as_user=(runuser -u postgres --); else as_user=(su postgres -s /bin/sh -c); fi
  fi
  _b3_as() {
    if [ "${#as_user[@]}" -eq 0 ]; then "$@";
    elif [ "${as_user[0]}" = runuser ]; then "${as_user[@]}" "$@";
    else "${as_user[@]}" "$(printf '%q ' "$@")"; fi
  }

  if [ "$mode" = stop ]; then
    local dir="${2:-${BENCH3D2D_TEST_POSTGRES_DIR:-}}"
    if [ -z "$dir" ] || [ ! -d "$dir/data" ]; then
      echo "start-postgres: nothing to stop (give the folder printed at start)" >&2
      return 1
    fi
    _b3_as "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$dir"
    return 0
  fi

  local dir port
  dir="$(mktemp -d "${TMPDIR:-/tmp}/bench3d2d-pg.XXXXXX")" || return 1
  chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')" \
    || { echo "start-postgres: python3 is needed to find a free port" >&2; return 1; }
  if ! _b3_as "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-instructions \
      >"$dir/initdb.log" 2>&1; then
    echo "start-postgres: initdb failed:" >&2; cat "$dir/initdb.log" >&2; rm -rf "$dir"; return 1
  fi
  if ! _b3_as "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null; then
    echo "start-postgres: the server did not start:" >&2; cat "$dir/server.log" >&2; rm -rf "$dir"; return 1
  fi
  if ! _b3_as "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres bench3d2d_test; then
    echo "start-postgres: createdb failed" >&2
    _b3_as "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$dir"; return 1
  fi
  export BENCH3D2D_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$port/bench3d2d_test"
  export BENCH3D2D_TEST_POSTGRES_DIR="$dir"
  echo "start-postgres: PostgreSQL on 127.0.0.1:$port (cluster in $dir), BENCH3D2D_TEST_POSTGRES_URL exported" >&2
  return 0
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  # Sourced: export into the caller's shell and stop the server when that shell exits.
  if _b3_pg_main start; then
    _b3_pg_self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
    _b3_pg_prev_trap="$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")"
    # shellcheck disable=SC2064
    trap "${_b3_pg_prev_trap:+$_b3_pg_prev_trap; }bash '$_b3_pg_self' stop '$BENCH3D2D_TEST_POSTGRES_DIR'" EXIT
    unset _b3_pg_self _b3_pg_prev_trap
  else
    false
  fi
else
  set -u
  if [ "${1:-start}" = stop ]; then
    _b3_pg_main stop "${2:-}"
  else
    _b3_pg_main start || exit 1
    printf 'export BENCH3D2D_TEST_POSTGRES_URL=%q\nexport BENCH3D2D_TEST_POSTGRES_DIR=%q\n' \
      "$BENCH3D2D_TEST_POSTGRES_URL" "$BENCH3D2D_TEST_POSTGRES_DIR"
  fi
fi
