#!/usr/bin/env bash
# mutation.sh runs mutation testing (gremlins) over Go packages: each mutant
# (a flipped comparison, a changed operator, ...) is applied to a copy of the
# module and the package's own tests are run; a mutant that no test notices
# "lives". See RELIABILITY.md, "Mutation testing", for the scores.
#
#   scripts/mutation.sh install          build gremlins into ./.tools/bin (once)
#   scripts/mutation.sh PKG[:FILES] ...  install if needed, then test each package
#
# PKG is a package directory (./lake, ./aggregate). FILES, optional, lists
# the file names (without .go, comma-separated, each a regular expression)
# that are mutated; all of the package's tests still run. E.g.
# ./aggregate:plan for aggregate/plan.go, ./schema:timeparse,decode for the
# decoder's parsing. Subpackages are not mutated.
#
# Tunables (environment): MUTATION_WORKERS (default 1: the tests of one
# mutant already use every core), MUTATION_TIMEOUT_COEFFICIENT (default 10:
# a mutant's tests may take 10x the unmutated run before it counts as timed
# out; the unmutated run is timed with the package already compiled, each
# mutant recompiles and relinks it, which alone can take 3x a quick suite),
# MUTATION_OUT (default .testenv/mutation: one JSON report per package),
# MUTATION_DRY_RUN=1 (list the mutants without testing them).
#
# Exit status is non-zero if gremlins fails to run; surviving mutants are
# reported, not failed (set MUTATION_THRESHOLD to a minimum efficacy in
# percent to fail below it).
#
# Run from the repository root (paths are relative to it).
set -euo pipefail

GREMLINS_VERSION="${GREMLINS_VERSION:-v0.6.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_BIN="$ROOT/.tools/bin"
BIN="$TOOLS_BIN/gremlins"
STAMP="$TOOLS_BIN/.gremlins-version"
WORKERS="${MUTATION_WORKERS:-1}"
COEFFICIENT="${MUTATION_TIMEOUT_COEFFICIENT:-10}"
OUT_DIR="${MUTATION_OUT:-$ROOT/.testenv/mutation}"
THRESHOLD="${MUTATION_THRESHOLD:-0}"
DRY_RUN="${MUTATION_DRY_RUN:-}"

log() { echo "mutation.sh: $*" >&2; }
die() { log "$*"; exit 1; }

install_gremlins() {
	if [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$GREMLINS_VERSION" ]]; then
		return 0
	fi
	command -v go >/dev/null || die "go not found in PATH"
	mkdir -p "$TOOLS_BIN"
	log "installing gremlins $GREMLINS_VERSION into $TOOLS_BIN"
	GOBIN="$TOOLS_BIN" go install "github.com/go-gremlins/gremlins/cmd/gremlins@$GREMLINS_VERSION"
	echo "$GREMLINS_VERSION" >"$STAMP"
}

# mutate_package PKG [FILES]
mutate_package() {
	local pkg="$1" files="${2:-}"
	[[ -d "$ROOT/$pkg" ]] || die "no package directory $pkg"
	local name
	name="$(echo "${pkg#./}${files:+-$files}" | tr -c 'A-Za-z0-9_\n-' '_')"
	local args=(unleash --workers "$WORKERS" --timeout-coefficient "$COEFFICIENT"
		--output "$OUT_DIR/$name.json" --threshold-efficacy "$THRESHOLD")
	if [[ -n "$DRY_RUN" ]]; then
		args+=(--dry-run)
	fi
	# Never mutate subpackages (their own run covers them) nor, with FILES,
	# the package's other files.
	# gremlins matches the expressions against paths relative to $pkg.
	local d f
	while IFS= read -r d; do
		args+=(--exclude-files "^${d#"$pkg"/}/")
	done < <(cd "$ROOT" && find "$pkg" -mindepth 1 -type d)
	if [[ -n "$files" ]]; then
		while IFS= read -r f; do
			f="$(basename "$f")"
			if ! [[ "${f%.go}" =~ ^($files)$ ]]; then
				args+=(--exclude-files "^${f//./\\.}$")
			fi
		done < <(cd "$ROOT" && find "$pkg" -maxdepth 1 -name '*.go' ! -name '*_test.go')
	fi
	log "$pkg${files:+ (files: $files)}: gremlins ${args[*]} $pkg"
	local start=$SECONDS
	# -count=1: gremlins times the unmutated tests to set each mutant's
	# timeout; a cached result would make that timeout a few seconds.
	(cd "$ROOT" && GOFLAGS="${GOFLAGS:+$GOFLAGS }-count=1" "$BIN" "${args[@]}" "$pkg")
	log "$pkg: $((SECONDS - start)) s; report in $OUT_DIR/$name.json"
}

main() {
	[[ $# -gt 0 ]] || die "usage: scripts/mutation.sh install | PKG[:FILES] ..."
	if [[ "$1" == install ]]; then
		install_gremlins
		return
	fi
	install_gremlins
	mkdir -p "$OUT_DIR"
	local spec
	for spec in "$@"; do
		if [[ "$spec" == *:* ]]; then
			local files="${spec#*:}"
			mutate_package "${spec%%:*}" "${files//,/|}"
		else
			mutate_package "$spec"
		fi
	done
}

main "$@"
