#!/usr/bin/env bash
# Makes a Docker engine answer for the container backend, idempotently: nothing is done when one
# already answers; otherwise Debian's docker.io is installed when dockerd is missing (root and
# apt-get needed), and dockerd is started in the background. Prints "docker: ready" or exits
# non-zero with the reason (the container tests then report "not run" with it).
set -euo pipefail

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if answers; then
  echo "docker: ready ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
  exit 0
fi
if [ -n "${DOCKER_HOST:-}" ]; then
  echo "install-docker: DOCKER_HOST=$DOCKER_HOST does not answer" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-docker: no dockerd, and installing Debian's docker.io needs root and apt-get" >&2
    exit 1
  fi
  echo "install-docker: installing docker.io from Debian's packages" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/tmp/cohort-install-docker.log 2>&1 || {
    echo "install-docker: apt-get install docker.io failed:" >&2
    tail -n 20 /tmp/cohort-install-docker.log >&2
    exit 1
  }
fi
if ! command -v docker >/dev/null 2>&1; then
  echo "install-docker: dockerd is installed but there is no docker client" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-docker: dockerd is not running, and starting it needs root" >&2
  exit 1
fi
log=/var/log/cohort-dockerd.log
echo "install-docker: starting dockerd (log: $log)" >&2
# setsid + nohup: the daemon outlives the script and the process that ran it.
setsid nohup dockerd >"$log" 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  if answers; then
    echo "docker: ready ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
    exit 0
  fi
  sleep 0.5
done
echo "install-docker: dockerd did not answer within 30 s; its log ends:" >&2
tail -n 20 "$log" >&2
exit 1
