#!/usr/bin/env bash
# Builds the platform wheel: the `driftline` Python package with the `driftline` server binary
# (release build of the workspace's crate, stripped), into ./dist or the directory given.
# Needs maturin (`pip install maturin`) and the Rust toolchain; CARGO_TARGET_DIR is honoured.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
out="$(mkdir -p "${1:-$here/dist}" && cd "${1:-$here/dist}" && pwd)"
# maturin takes the Python package from python/ beside pyproject.toml and leaves out what a
# .gitignore of the checkout names: the project is assembled outside the checkout, from the
# same sources as the pure-Python package.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/python"
cp -r "$here/../src/driftline" "$work/python/driftline"
find "$work/python" -name __pycache__ -prune -exec rm -rf {} +
cp "$here/../README.md" "$work/README.md"
sed -e "s|^manifest-path = .*|manifest-path = \"$repo/crates/driftline/Cargo.toml\"|" \
    -e 's|^readme = .*|readme = "README.md"|' "$here/pyproject.toml" > "$work/pyproject.toml"
cd "$work"
maturin build --release --out "$out"
