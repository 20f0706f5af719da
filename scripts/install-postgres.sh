#!/usr/bin/env bash
# Make sure PostgreSQL 15 server binaries and psql are on this machine
# (Debian's packages). Prints the bin directory. Used by scripts/demo.sh and
# .ci/run; a no-op where they are already installed.
set -euo pipefail

find_bindir() {
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  fi
  for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

if ! bindir=$(find_bindir) || ! command -v psql >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "PostgreSQL 15 server binaries are missing; install Debian's postgresql-15 (as root: apt-get install postgresql-15)" >&2
    exit 1
  fi
  echo "installing postgresql-15 from Debian's packages..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql-15 postgresql-client-15 >&2
  bindir=$(find_bindir)
fi
echo "$bindir"
