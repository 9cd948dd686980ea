#!/usr/bin/env bash
# Install nbtui (and its server extra) with the LOWEST declared version of every direct
# dependency, on the lowest and the newest supported Python, and run .ci/smoke.py in each:
# every module imports, `nbtui ls`, `nbtui exec`, a run_test() of the fleet screen.
#   .ci/lowest.sh [PYTHON...]     (default: pyenv's 3.10 and 3.13 where they are installed)
# Each Python is bounded in time (LOWEST_TIMEOUT seconds, default 600).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
pythons=("$@")
if [ ${#pythons[@]} -eq 0 ]; then
  for v in 3.10 3.13; do
    found=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$v".*/bin/python 2>/dev/null | sort -V | tail -1 || true)
    if [ -n "$found" ]; then pythons+=("$found"); else echo "lowest: no Python $v here, skipped"; fi
  done
fi
status=0
for py in "${pythons[@]}"; do
  ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  venv="$root/.venv-lowest-$ver"
  echo "lowest: Python $ver ($py)"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  python3 .ci/lowest_constraints.py server > "$venv/constraints.txt"
  if ! timeout "${LOWEST_TIMEOUT:-600}" "$venv/bin/pip" install -q --disable-pip-version-check \
      -c "$venv/constraints.txt" "$root[server]" > "$venv/install.log" 2>&1; then
    grep -v "^WARNING: Location" "$venv/install.log" | tail -20
    echo "lowest: FAILED to install the lowest versions on Python $ver"
    status=1
    continue
  fi
  "$venv/bin/pip" list --disable-pip-version-check 2>/dev/null \
    | grep -i -E "^(textual|rich|httpx|websockets|jupyter.client|jupyter.core|jupyter.server|ipykernel|keyring|nvidia-ml-py|orjson|psutil|platformdirs|tomli|tomli.w) " \
    | tr -s ' ' | tr '\n' ',' | sed 's/,$/\n/; s/^/lowest: installed: /'
  # From / so that the installed package is imported, not the checkout.
  if ! (cd / && timeout "${LOWEST_TIMEOUT:-600}" "$venv/bin/python" "$root/.ci/smoke.py"); then
    echo "lowest: FAILED the smoke on Python $ver"
    status=1
  fi
done
exit $status
