#!/usr/bin/env bash
# Prints deploy/krew/serverconfig.yaml with a release's values filled in:
# spec.version, and the linux/amd64 platform's uri and sha256 (of ARCHIVE,
# the .tar.gz a release publishes at URI; it holds the serverconfig-webhook
# binary, which krew links as kubectl-serverconfig).
# Usage: deploy/krew/fill-manifest.sh v0.1.0 https://.../serverconfig-webhook-v0.1.0-linux-amd64.tar.gz DIST/serverconfig-webhook-v0.1.0-linux-amd64.tar.gz > serverconfig.yaml
set -euo pipefail
version="${1:?usage: $0 VERSION URI ARCHIVE}" uri="${2:?usage: $0 VERSION URI ARCHIVE}" archive="${3:?usage: $0 VERSION URI ARCHIVE}"
case "$version" in v[0-9]*) ;; *) echo "$0: version $version must look like v1.2.3" >&2; exit 2 ;; esac
[ -f "$archive" ] || { echo "$0: no archive $archive" >&2; exit 2; }
sum="$(sha256sum "$archive" | cut -d' ' -f1)"
manifest="$(dirname "$0")/serverconfig.yaml"
awk -v version="$version" -v uri="$uri" -v sum="$sum" '
  /^  version: /                 { print "  version: " version; next }
  /^    uri: /                   { print "    uri: " uri; n_uri++; next }
  /^    sha256: /                { print "    sha256: \"" sum "\""; n_sum++; next }
  { print }
  END { if (n_uri != 1 || n_sum != 1) { print "fill-manifest: expected one uri and one sha256 line" > "/dev/stderr"; exit 1 } }
' "$manifest"
