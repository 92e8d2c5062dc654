#!/usr/bin/env bash
# Side-by-side: gate's scanner and secretgate's scanner (PyPI `secretgate`) on the same generated
# files, same machine, same run. Single thread both. Needs python3 with venv; installs secretgate
# into a throwaway venv unless SECRETGATE_PYTHON points at a python that has it.
#   bash gate-scan/benches/secretgate_compare.sh [OUT_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/target/bench-files}"
py="${SECRETGATE_PYTHON:-}"
if [[ -z "$py" ]]; then
  venv="$root/target/secretgate-venv"
  if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet secretgate
  fi
  py="$venv/bin/python"
fi
echo "== gate (release build, single thread)"
(cd "$root" && AYA_BUILD_SKIP=1 cargo run --quiet --release -p gate-scan --example bench_files -- "$out")
echo "== secretgate $("$py" -c 'import importlib.metadata as m; print(m.version("secretgate"))')"
"$py" "$here/secretgate_driver.py" "$out"
