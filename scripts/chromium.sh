#!/usr/bin/env bash
# chromium.sh installs Debian's chromium for the dashboard's browser test
# (web/page, driven by chromedp) and prints the path of the binary.
#
#   scripts/chromium.sh path      print the browser's path if installed (exit 1 if not)
#   scripts/chromium.sh install   apt-get install chromium if missing, then print its path
#
# The browser test calls "install" itself when no browser is found; it
# needs root (or passwordless sudo) and the Debian archive.
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }

find_browser() {
	for b in chromium chromium-browser google-chrome headless-shell; do
		if command -v "$b" >/dev/null 2>&1; then
			command -v "$b"
			return 0
		fi
	done
	return 1
}

case "${1:-path}" in
path)
	find_browser
	;;
install)
	if find_browser; then
		exit 0
	fi
	SUDO=""
	if [[ "$(id -u)" != 0 ]]; then
		command -v sudo >/dev/null 2>&1 || { log "not root and no sudo: cannot install chromium"; exit 1; }
		SUDO="sudo -n"
	fi
	log "installing Debian's chromium (apt-get)"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq >&2
	$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
	find_browser
	;;
*)
	log "usage: $0 path|install"
	exit 2
	;;
esac
