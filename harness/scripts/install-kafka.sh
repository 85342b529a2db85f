#!/usr/bin/env bash
# Installs the pinned Apache Kafka release (the broker's jars and their dependencies) into
# Cohort's cache and prints the folder that holds the jars. Idempotent and offline once cached:
# a complete install in the cache is reused without asking Maven anything.
#
# The release is named in one place, harness/kafka/pom.xml (`kafka.version`); Maven resolves the
# artifacts from the registry it is configured with, so no download address is written here.
#
# Environment:
#   COHORT_CACHE_DIR  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/cohort)
#   COHORT_KAFKA_POM  the pom to install from (default: harness/kafka/pom.xml beside this script)
#   JAVA_HOME         the Java to check (default: java on PATH); Apache Kafka 4 needs Java 17+
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" 2>/dev/null && pwd || true)"
pom="${COHORT_KAFKA_POM:-$here/../kafka/pom.xml}"
if [ ! -f "$pom" ]; then
  echo "install-kafka: no pom at $pom (set COHORT_KAFKA_POM)" >&2
  exit 1
fi
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom" | head -n1)"
if [ -z "$version" ]; then
  echo "install-kafka: $pom names no <kafka.version>" >&2
  exit 1
fi

cache="${COHORT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cohort}"
dest="$cache/kafka/$version"
libs="$dest/libs"

# A complete install lists its jars in COMPLETE; every one must still be there.
complete() {
  [ -f "$dest/COMPLETE" ] || return 1
  local jar
  while IFS= read -r jar; do
    [ -f "$libs/$jar" ] || return 1
  done < "$dest/COMPLETE"
  [ -f "$libs/kafka_2.13-$version.jar" ] && [ -f "$libs/kafka-clients-$version.jar" ]
}

if complete; then
  echo "$libs"
  exit 0
fi

# Java: the broker needs 17 or newer. Checked before Maven so the message names what is missing.
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
if ! command -v "$java" >/dev/null 2>&1; then
  echo "install-kafka: Java is missing (no '$java'): Apache Kafka $version needs a Java 17+ runtime." >&2
  echo "  Install one (Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME," >&2
  echo "  or run without Apache Kafka on the Tansu broker: COHORT_BROKER_KIND=tansu" >&2
  exit 1
fi
jv="$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
if [ -z "$jv" ] || [ "$jv" -lt 17 ]; then
  echo "install-kafka: $java is Java ${jv:-of unknown version}; Apache Kafka $version needs 17 or newer" >&2
  echo "  (set JAVA_HOME to a newer one, or use the Tansu broker: COHORT_BROKER_KIND=tansu)" >&2
  exit 1
fi
if ! command -v mvn >/dev/null 2>&1; then
  echo "install-kafka: Maven (mvn) is missing: it fetches Apache Kafka $version's jars." >&2
  echo "  Install it (Debian: apt-get install maven), or use the Tansu broker: COHORT_BROKER_KIND=tansu" >&2
  exit 1
fi

mkdir -p "$cache/kafka"
tmp="$(mktemp -d "$cache/kafka/.install-$version.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "install-kafka: resolving org.apache.kafka:kafka_2.13:$version with Maven" >&2
if ! mvn -q -B -f "$pom" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp/libs" >"$tmp/mvn.log" 2>&1; then
  echo "install-kafka: Maven could not resolve org.apache.kafka:kafka_2.13:$version and its" >&2
  echo "  dependencies. Is the Maven registry reachable from here (network, ~/.m2/settings.xml)?" >&2
  echo "  Without it, run on the Tansu broker: COHORT_BROKER_KIND=tansu. Maven said:" >&2
  tail -n 25 "$tmp/mvn.log" | sed 's/^/    /' >&2
  exit 1
fi
(cd "$tmp/libs" && ls -1 ./*.jar | sed 's:^\./::') > "$tmp/COMPLETE"
# Another install may have finished meanwhile; replace its folder whole, never half.
rm -rf "$dest.old.$$"
if [ -d "$dest" ]; then mv "$dest" "$dest.old.$$"; fi
mkdir -p "$dest"
mv "$tmp/libs" "$libs"
mv "$tmp/COMPLETE" "$dest/COMPLETE"
rm -rf "$dest.old.$$"
echo "install-kafka: installed Apache Kafka $version ($(wc -l < "$dest/COMPLETE") jars) in $libs" >&2
echo "$libs"
