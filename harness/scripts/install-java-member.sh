#!/usr/bin/env bash
# Builds the harness's Java programs (harness/clients/java: JavaMember, the Java consumer of the
# pinned Apache Kafka release driven like a cohort member; JavaAssign, the release's assignors
# for comparing plans; JavaConsume, the consumer timed for the throughput benchmark) against that release's own jars, and prints the folder of their classes. Idempotent and offline once built: the build is keyed by the source's
# hash and the Kafka version, and reused while both stay the same.
#
# Usage: install-java-member.sh [SOURCE_DIR]   (default: harness/clients/java beside this script)
# Environment: COHORT_CACHE_DIR (cache root), JAVA_HOME (the JDK whose javac builds it; Java 17+),
# COHORT_KAFKA_LIBS_DIR (the release's jars, when the caller has installed them already).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" 2>/dev/null && pwd || true)"
src="${1:-$here/../clients/java}"
files=("$src"/src/cohort/*.java)
if [ ! -f "${files[0]}" ]; then
  echo "install-java-member: no Java sources in $src/src/cohort" >&2
  exit 1
fi
# The broker's jars carry the kafka-clients of the same release, and its dependencies.
libs="${COHORT_KAFKA_LIBS_DIR:-}"
if [ -z "$libs" ]; then
  libs="$("$here/install-kafka.sh" | tail -n1)"
fi
version="$(ls "$libs" | sed -n 's/^kafka-clients-\(.*\)\.jar$/\1/p' | head -n1)"
javac="${JAVA_HOME:+$JAVA_HOME/bin/}javac"
if ! command -v "$javac" >/dev/null 2>&1; then
  echo "install-java-member: no Java compiler ('$javac'); the Java member needs a JDK 17+" >&2
  exit 1
fi

cache="${COHORT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cohort}"
key="$(cat "${files[@]}" | sha256sum | cut -c1-16)-$version"
dest="$cache/clients/java/$key"
classes="JavaMember JavaAssign JavaConsume"
complete() { for c in $classes; do [ -f "$1/classes/cohort/$c.class" ] || return 1; done; }
if complete "$dest"; then
  echo "$dest/classes"
  exit 0
fi
mkdir -p "$cache/clients/java"
tmp="$(mktemp -d "$cache/clients/java/.build-$key.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "install-java-member: building the Java programs against kafka-clients $version" >&2
"$javac" -Xlint:all -Werror -d "$tmp/classes" -cp "$libs/*" "${files[@]}" >&2
# Two builds at once (parallel tests) may both get here: the first rename wins and the other's
# classes, the same ones, are dropped, so a folder already printed is never replaced under a
# running program. A folder left incomplete by an older script goes first.
if [ -d "$dest" ] && ! complete "$dest"; then
  rm -rf "$dest"
fi
mv -T "$tmp" "$dest" 2>/dev/null || true
echo "$dest/classes"
