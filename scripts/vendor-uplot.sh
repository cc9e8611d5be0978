#!/usr/bin/env bash
# vendor-uplot.sh refreshes the dashboard's charting library from npm:
# npm pack uplot@VERSION, check the tarball's sha256, copy the minified
# build, its CSS and its licence into web/page/assets/vendor/uplot.
set -euo pipefail
VERSION="${UPLOT_VERSION:-1.6.32}"
SHA256="${UPLOT_SHA256:-4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/web/page/assets/vendor/uplot"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack "uplot@$VERSION" >/dev/null)
echo "$SHA256  $TMP/uplot-$VERSION.tgz" | sha256sum -c - >&2
tar -xzf "$TMP/uplot-$VERSION.tgz" -C "$TMP"
cp "$TMP/package/dist/uPlot.iife.min.js" "$TMP/package/dist/uPlot.min.css" "$TMP/package/LICENSE" "$DEST/"
echo "uPlot $VERSION vendored into $DEST" >&2
