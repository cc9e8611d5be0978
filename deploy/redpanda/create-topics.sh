#!/bin/sh
# Creates the sample table's topic, idempotently (a restart of the stack finds
# it there). rpk reads the broker list from RPK_BROKERS.
set -eu
topic="${TOPIC:-events}"
partitions="${TOPIC_PARTITIONS:-6}"
if rpk topic describe "$topic" >/dev/null 2>&1; then
	echo "topic $topic exists"
	exit 0
fi
rpk topic create "$topic" --partitions "$partitions" --replicas 1
