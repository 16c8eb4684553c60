#!/usr/bin/env bash
# Build the shared, read-only TypeScript toolchain (tsx and its esbuild, and
# the language server the page's editor uses: typescript-language-server over
# typescript) that every session container sees at /opt/servcraft/toolchain. Installed with the
# host's npm from the configured registry; cached by a stamp.
#   OUT=folder scripts/build-toolchain.sh   (default .servcraft/toolchain)
# Prints the toolchain folder as the last line. OUT is a symbolic link to a
# versioned folder beside it (OUT.d/<version>): a rebuild points the link at a
# new folder and never deletes one that running sessions have mounted.
set -euo pipefail
TSX_VERSION=4.23.15
TYPESCRIPT_VERSION=5.9.3
TSLS_VERSION=4.4.1
OUT="${OUT:-${SERVCRAFT_STATE:-$PWD/.servcraft}/toolchain}"
STAMP="$OUT/.stamp"
want="tsx@$TSX_VERSION typescript@$TYPESCRIPT_VERSION typescript-language-server@$TSLS_VERSION warm.ts node=$(node --version 2>/dev/null || echo none)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -f "$OUT/node_modules/tsx/dist/loader.mjs" ]; then
	echo "build-toolchain: cached ($want)" >&2
	echo "$OUT"
	exit 0
fi
command -v npm >/dev/null || { echo "build-toolchain: npm not found on the host" >&2; exit 1; }
tmp="$(mktemp -d "${OUT%/*}/.toolchain.XXXXXX" 2>/dev/null || { mkdir -p "${OUT%/*}"; mktemp -d "${OUT%/*}/.toolchain.XXXXXX"; })"
trap 'rm -rf "$tmp"' EXIT
echo "build-toolchain: npm install tsx@$TSX_VERSION typescript@$TYPESCRIPT_VERSION typescript-language-server@$TSLS_VERSION" >&2
printf '{"name":"servcraft-toolchain","private":true}\n' >"$tmp/package.json"
npm install --prefix "$tmp" --no-audit --no-fund --omit=dev --loglevel=error "tsx@$TSX_VERSION" \
	"typescript@$TYPESCRIPT_VERSION" "typescript-language-server@$TSLS_VERSION" >&2
test -f "$tmp/node_modules/tsx/dist/loader.mjs" || { echo "build-toolchain: tsx loader missing" >&2; exit 1; }
test -f "$tmp/node_modules/typescript-language-server/lib/cli.mjs" || { echo "build-toolchain: typescript-language-server missing" >&2; exit 1; }
# A waiting TypeScript runner imports this first, so its first transform is done before a run.
printf 'export const warm: number = 1;\n' >"$tmp/warm.ts"
printf '%s' "$want" >"$tmp/.stamp"
chmod -R a+rX "$tmp"
version="$(printf '%s' "$want" | sha256sum | cut -c1-12)"
mkdir -p "$OUT.d"
rm -rf "${OUT:?}.d/$version"
mv "$tmp" "$OUT.d/$version"
trap - EXIT
[ -L "$OUT" ] || rm -rf "$OUT" # an older layout kept a plain folder here
ln -sfn "$(basename "$OUT").d/$version" "$OUT.tmp"
mv -T "$OUT.tmp" "$OUT"
echo "$OUT"
