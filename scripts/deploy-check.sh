#!/usr/bin/env bash
# deploy-check.sh validates the deployment files without a Docker engine:
# the compose file, the Prometheus config and rules (with their unit tests),
# the Grafana dashboards' JSON, and the image's build stage (a static
# CGO_ENABLED=0 build). It installs promtool and docker-compose from Debian
# when they are missing (as root, non-interactive).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s\n' "$*"; }

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v jq >/dev/null 2>&1 || need+=(jq)
if ((${#need[@]})); then
	step "apt-get install ${need[*]}"
	if [[ $(id -u) -ne 0 ]]; then
		echo "missing ${need[*]}; run as root or install them: apt-get install -y ${need[*]}" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${need[@]}"
fi

step "docker-compose config"
# No engine is needed to validate; the secrets have defaults in the file.
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml --profile loadtest config -q
docker-compose -f docker-compose.yml --profile kinesis config -q

step "promtool check config"
promtool check config deploy/prometheus/prometheus.yml

step "promtool check rules"
promtool check rules deploy/prometheus/rules/*.yml

step "promtool test rules"
promtool test rules deploy/prometheus/tests/*.yml

step "dashboards are JSON"
for f in deploy/grafana/dashboards/*.json; do
	jq -e '.uid and .title and (.panels | length > 0)' "$f" >/dev/null || { echo "bad dashboard: $f" >&2; exit 1; }
	echo "$f ok"
done

step "image build stage (static build)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/sluice" ./cmd/sluice
if command -v file >/dev/null 2>&1; then
	file "$out/sluice" | grep -q 'statically linked' || { file "$out/sluice"; echo "not static" >&2; exit 1; }
fi
"$out/sluice" version
echo "ok: $(du -h "$out/sluice" | cut -f1) static binary"
