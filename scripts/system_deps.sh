#!/usr/bin/env bash
# System packages the test suite uses: PostgreSQL (storage tests start a throw-away server),
# Chromium (report rendering test) and Redis (the Celery broker of the distributed Airflow test).
# Installed from Debian's packages only when missing.
set -euo pipefail
need=()
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "[system-deps] missing: ${need[*]} — install them (Debian: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "[system-deps] installing ${need[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
