#!/usr/bin/env bash
# Builds the Docker image cohort-kafka:<version> for the container backend where no registry
# can be pulled from, and prints its reference. Idempotent: an image Docker already has is reused.
#
# The base is a minimal Debian root file system with a headless Java 17 runtime, made by
# debootstrap from the suite and mirror this machine's apt already uses (so no address is
# written here), imported into Docker once as cohort-debian-jre:17 and cached as a tarball in
# Cohort's cache folder. On top of it go the cached jars of the pinned Apache Kafka release and
# an entrypoint that takes KAFKA_* variables as the apache/kafka image does.
#
# Needs: a running Docker engine; root and debootstrap (installed from Debian's packages when
# missing) for the first base image only.
# Environment (set by cohort-testbroker): COHORT_KAFKA_LIBS, COHORT_KAFKA_VERSION,
# COHORT_KAFKA_ENTRYPOINT and COHORT_KAFKA_LOG4J2 (the entrypoint's and the logging
# configuration's text).
set -euo pipefail
libs="${COHORT_KAFKA_LIBS:?COHORT_KAFKA_LIBS: the folder of Apache Kafka jars}"
version="${COHORT_KAFKA_VERSION:?COHORT_KAFKA_VERSION}"
entrypoint="${COHORT_KAFKA_ENTRYPOINT:?COHORT_KAFKA_ENTRYPOINT}"
image="cohort-kafka:$version"
base="cohort-debian-jre:17"
cache="${COHORT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cohort}/kafka-image"

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

if ! docker image inspect "$base" >/dev/null 2>&1; then
  tarball="$cache/debian-jre17-rootfs.tar"
  if [ ! -f "$tarball" ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "build-kafka-image: making the base root file system needs root (debootstrap)" >&2
      exit 1
    fi
    if ! command -v debootstrap >/dev/null 2>&1; then
      echo "build-kafka-image: installing debootstrap from Debian's packages" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
    fi
    . /etc/os-release
    suite="${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"
    # The mirror this machine's apt is configured with (deb822 or one-line format).
    mirror="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
      | grep -v security | head -n1 || true)"
    if [ -z "$mirror" ]; then
      mirror="$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p' \
        /etc/apt/sources.list 2>/dev/null | grep -v security | head -n1 || true)"
    fi
    if [ -z "$mirror" ]; then
      echo "build-kafka-image: no Debian mirror configured for apt on this machine" >&2
      exit 1
    fi
    echo "build-kafka-image: debootstrap $suite with openjdk-17-jre-headless (a few minutes, once)" >&2
    debootstrap --variant=minbase --include=openjdk-17-jre-headless \
      "$suite" "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 || {
      echo "build-kafka-image: debootstrap failed; its log ends:" >&2
      tail -n 30 "$tmp/debootstrap.log" >&2
      exit 1
    }
    rm -rf "$tmp/rootfs/var/cache/apt/archives/"*.deb "$tmp/rootfs/var/lib/apt/lists/"*
    tar -C "$tmp/rootfs" -cf "$tmp/rootfs.tar" .
    mv "$tmp/rootfs.tar" "$tarball"
    rm -rf "$tmp/rootfs"
  fi
  echo "build-kafka-image: importing $base" >&2
  docker import "$tarball" "$base" >/dev/null
fi

mkdir -p "$tmp/ctx/libs"
cp "$libs"/*.jar "$tmp/ctx/libs/"
printf '%s\n' "$entrypoint" > "$tmp/ctx/entrypoint.sh"
chmod 0755 "$tmp/ctx/entrypoint.sh"
printf '%s\n' "${COHORT_KAFKA_LOG4J2:?COHORT_KAFKA_LOG4J2}" > "$tmp/ctx/log4j2.properties"
cat > "$tmp/ctx/Dockerfile" <<DOCKER
FROM $base
COPY libs /opt/kafka/libs
COPY log4j2.properties /opt/kafka/config/log4j2.properties
COPY entrypoint.sh /entrypoint.sh
ENV PATH=/usr/lib/jvm/java-17-openjdk-amd64/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EXPOSE 9092
ENTRYPOINT ["/entrypoint.sh"]
DOCKER
echo "build-kafka-image: building $image" >&2
DOCKER_BUILDKIT=0 docker build -q -t "$image" "$tmp/ctx" >/dev/null
echo "$image"
