#!/usr/bin/env bash
# Installs what m2fetch needs on a Debian machine with Node.js/npm:
# Deno (from npm), mongrel2 1.12 (Debian's mongrel2-core), libzmq (libzmq5:
# mongrel2 depends on it, and the tests' stand-ins for mongrel2's sockets
# load it through Deno's FFI; m2fetch itself speaks ZMTP on its own), curl,
# wrk, and the project's npm dependencies (Hono and fast-check, for examples
# and tests).
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DENO_VERSION=2.9.6
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: need root (or sudo) to run: $*" >&2; exit 1
  fi
}

if ! command -v deno >/dev/null 2>&1 || ! deno --version 2>/dev/null | grep -q "^deno 2\."; then
  echo "setup: installing Deno ${DENO_VERSION} from npm" >&2
  as_root npm install --global --no-audit --no-fund "deno@${DENO_VERSION}" >&2
fi

missing=()
command -v mongrel2 >/dev/null 2>&1 && command -v m2sh >/dev/null 2>&1 || missing+=(mongrel2-core)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
/sbin/ldconfig -p 2>/dev/null | grep -q 'libzmq\.so\.5 ' || missing+=(libzmq5)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} from Debian" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

# m2sh logs an error without LOGNAME; export one for the shells that source us.
export LOGNAME="${LOGNAME:-$(id -un)}"
deno install --quiet >&2
echo "setup: ready ($(deno --version | head -n1), mongrel2 $(dpkg-query -W -f='${Version}' mongrel2-core 2>/dev/null || echo "(not from dpkg)"))" >&2
