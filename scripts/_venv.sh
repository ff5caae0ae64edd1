# Sourced by scripts/serve and scripts/test: make .venv (with the given extra) if missing or stale.
# "Stale" means pyproject.toml changed since the last install, or the extra asked for is new.
ensure_venv() {
  local extra="${1:-}" here venv stamp want
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  venv="$here/.venv"
  stamp="$venv/.sessionmem-install"
  want="$(python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$here/pyproject.toml") ${extra:-base}"
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ]; then
    local have; have="$(cat "$stamp")"
    # A dev install also serves: it has every base dependency.
    if [ "$have" = "$want" ] || { [ -z "$extra" ] && [ "${have% *}" = "${want% *}" ]; }; then
      return 0
    fi
  fi
  echo "Installing sessionmem into $venv ${extra:+(with $extra extras) }(once; about a minute)..." >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  # pip's own chatter goes to a log; it is shown only if the install fails.
  local log="$venv/install.log" target="$here"
  [ -n "$extra" ] && target="$here[$extra]"
  if ! { "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip \
           && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$target"; \
       } >"$log" 2>&1; then
    cat "$log" >&2
    echo "The install failed (log: $log)." >&2
    return 1
  fi
  echo "$want" > "$stamp"
}
