#!/usr/bin/env bash
# Refresh the console's vendored htmx from the npm registry (run by `make vendor-htmx`).
# The coordinator serves this committed copy itself: no CDN, and no Node at run time.
# npm checks the tarball against the registry's integrity hash before we copy the file.
set -euo pipefail
VERSION="${1:?usage: vendor-htmx.sh VERSION}"
HERE="$(cd "$(dirname "$0")" && pwd)"
STATIC="$HERE/../src/fleet_coordinator/console/static"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "htmx.org@$VERSION" >/dev/null)
tar -xzf "$WORK"/htmx.org-"$VERSION".tgz -C "$WORK"
cp "$WORK/package/dist/htmx.min.js" "$STATIC/htmx.min.js"
cp "$WORK/package/LICENSE" "$STATIC/htmx.LICENSE"
INTEGRITY="$(cd "$WORK" && npm view "htmx.org@$VERSION" dist.integrity)"
printf 'htmx.org %s from the npm registry (%s)\nsha256 of htmx.min.js: %s\n' \
  "$VERSION" "$INTEGRITY" "$(sha256sum "$STATIC/htmx.min.js" | cut -d' ' -f1)" > "$STATIC/htmx.VERSION"
cat "$STATIC/htmx.VERSION"
