#!/usr/bin/env bash
# Starts, stops or reports the daemons the consumer tests load images into:
# a private containerd and a private dockerd that uses it. Everything (config,
# state, sockets, logs, pidfiles) lives under one directory so nothing touches
# the host's own /var/lib/docker or /run/containerd.
#
#   scripts/services.sh start|stop|status
#
# `start` is idempotent: daemons that already answer are reused. After it
# succeeds, <dir>/env holds KEY=VALUE lines (DOCKER_HOST, CONTAINERD_ADDRESS,
# CONTAINERD_SNAPSHOTTER, DOCKER_BIN, RECORDING_RUNTIME, RECORDING_RUNTIME_DIR)
# for the tests.
#
# dockerd knows one extra runtime, `lapin-recording`: a copy of
# test/helpers/recording-runtime.sh that test/consumers/engines.test.ts points
# `docker run --runtime` at. Its recordings land under
# <dir>/recording-runtime/recordings/<container id>.
set -euo pipefail

dir="${LAPIN_SERVICES_DIR:-/tmp/lapin-services}"
wait_seconds="${LAPIN_SERVICES_TIMEOUT:-60}"
# native needs no kernel support beyond plain files; overlayfs is not
# mountable in every sandbox, and the test images are tiny.
snapshotter="${LAPIN_CONTAINERD_SNAPSHOTTER:-native}"

ctrd_dir="$dir/containerd"
ctrd_sock="$ctrd_dir/containerd.sock"
ctrd_pid="$ctrd_dir/containerd.pid"
ctrd_log="$dir/containerd.log"

dockerd_dir="$dir/docker"
docker_sock="$dockerd_dir/docker.sock"
dockerd_pid="$dockerd_dir/dockerd.pid"
dockerd_launch_pid="$dockerd_dir/launched.pid"
dockerd_log="$dir/dockerd.log"

recording_source="$(cd "$(dirname "$0")/.." && pwd)/test/helpers/recording-runtime.sh"
recording_dir="$dir/recording-runtime"
recording_bin="$recording_dir/runtime"
recording_name="lapin-recording"

# The Debian client matches the Debian daemon (20.10); a newer client that
# comes first on PATH would negotiate down anyway, but keep them paired.
if [ -x /usr/bin/docker ]; then docker_bin=/usr/bin/docker; else docker_bin="$(command -v docker || true)"; fi

die() { echo "services.sh: $*" >&2; exit 1; }

pid_alive() { # pidfile program: also checks the program, as pids get reused
  [ -s "$1" ] || return 1
  local pid; pid="$(cat "$1")"
  kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

containerd_answers() {
  # Without the socket check ctr waits 10s for a daemon that is not there.
  [ -S "$ctrd_sock" ] && timeout 10 ctr --address "$ctrd_sock" --connect-timeout 2s version >/dev/null 2>&1
}

dockerd_answers() {
  [ -S "$docker_sock" ] && [ -n "$docker_bin" ] && timeout 10 "$docker_bin" -H "unix://$docker_sock" version >/dev/null 2>&1
}

wait_until() { # name(=program) probe log pidfile
  local name="$1" probe="$2" log="$3" pidfile="$4" deadline=$((SECONDS + wait_seconds))
  while ! "$probe"; do
    # Plain kill -0: right after launch the process may not have exec'd yet.
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "services.sh: $name exited during start-up; last lines of $log:" >&2
      tail -n 30 "$log" >&2 || true
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "services.sh: $name did not answer within ${wait_seconds}s; stopping it; last lines of $log:" >&2
      tail -n 30 "$log" >&2 || true
      stop_one "$name" "$pidfile" >/dev/null
      exit 1
    fi
    sleep 0.2
  done
}

start_containerd() {
  if containerd_answers; then return; fi
  command -v containerd >/dev/null || die "containerd not found (run scripts/install-deps.sh)"
  command -v ctr >/dev/null || die "ctr not found (run scripts/install-deps.sh)"
  # A containerd that runs but does not answer is stuck: replace it.
  stop_one containerd "$ctrd_pid" >/dev/null
  mkdir -p "$ctrd_dir/root" "$ctrd_dir/state" "$ctrd_dir/opt"
  rm -f "$ctrd_sock" "$ctrd_sock.ttrpc"
  # The CRI plugin needs CNI and more; the tests use only images and content.
  cat >"$ctrd_dir/config.toml" <<EOF
version = 2
root = "$ctrd_dir/root"
state = "$ctrd_dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$ctrd_sock"

[ttrpc]
  address = "$ctrd_sock.ttrpc"

[debug]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$ctrd_dir/opt"
EOF
  # 9>&- : the daemon must not inherit (and so hold) the start lock.
  setsid containerd --config "$ctrd_dir/config.toml" </dev/null >>"$ctrd_log" 2>&1 9>&- &
  echo $! >"$ctrd_pid"
  wait_until containerd containerd_answers "$ctrd_log" "$ctrd_pid"
}

install_recording_runtime() {
  mkdir -p "$recording_dir/recordings"
  # A checkout without the tests (a packed copy) has nothing to install.
  [ -f "$recording_source" ] || return 0
  if cmp -s "$recording_source" "$recording_bin"; then return; fi
  # Copy, then rename: a runtime being exec'd right now keeps its old file.
  cp "$recording_source" "$recording_bin.$$"
  chmod 0755 "$recording_bin.$$"
  mv "$recording_bin.$$" "$recording_bin"
}

write_daemon_json() {
  # Only what differs from the defaults; an empty config would also keep a
  # host /etc/docker/daemon.json out of it.
  printf '{"runtimes": {"%s": {"path": "%s"}}}\n' "$recording_name" "$recording_bin" >"$dockerd_dir/daemon.json.$$"
  mv "$dockerd_dir/daemon.json.$$" "$dockerd_dir/daemon.json"
}

dockerd_has_recording_runtime() {
  timeout 10 "$docker_bin" -H "unix://$docker_sock" info --format '{{json .Runtimes}}' 2>/dev/null |
    grep -qF "\"$recording_name\":{\"path\":\"$recording_bin\""
}

# A dockerd started by an older services.sh has no recording runtime: add it
# to its config and have it reload (runtimes are reloadable on SIGHUP), so the
# daemon and the containers other tests use keep running.
register_recording_runtime() {
  if dockerd_has_recording_runtime; then return; fi
  write_daemon_json
  pid_alive "$dockerd_pid" dockerd || die "dockerd answers but $dockerd_pid does not name it; stop it and start again"
  kill -HUP "$(cat "$dockerd_pid")"
  local deadline=$((SECONDS + wait_seconds))
  until dockerd_has_recording_runtime; do
    [ "$SECONDS" -lt "$deadline" ] || die "dockerd did not load the $recording_name runtime on SIGHUP; see $dockerd_log"
    sleep 0.2
  done
}

start_dockerd() {
  install_recording_runtime
  if dockerd_answers; then register_recording_runtime; return; fi
  command -v dockerd >/dev/null || die "dockerd not found (run scripts/install-deps.sh)"
  [ -n "$docker_bin" ] || die "docker client not found (run scripts/install-deps.sh)"
  stop_one dockerd "$dockerd_launch_pid" >/dev/null
  mkdir -p "$dockerd_dir/data" "$dockerd_dir/exec"
  rm -f "$docker_sock" "$dockerd_pid"
  write_daemon_json
  setsid dockerd \
    --config-file "$dockerd_dir/daemon.json" \
    --data-root "$dockerd_dir/data" \
    --exec-root "$dockerd_dir/exec" \
    --pidfile "$dockerd_pid" \
    -H "unix://$docker_sock" \
    --containerd "$ctrd_sock" \
    --storage-driver vfs \
    --iptables=false --ip6tables=false --ip-masq=false --bridge=none \
    --userland-proxy=false \
    </dev/null >>"$dockerd_log" 2>&1 9>&- &
  # dockerd refuses to start when its own --pidfile exists, so track the
  # launched process in a separate file.
  echo $! >"$dockerd_launch_pid"
  wait_until dockerd dockerd_answers "$dockerd_log" "$dockerd_launch_pid"
}

write_env() {
  local tmp="$dir/env.$$"
  {
    echo "DOCKER_HOST=unix://$docker_sock"
    echo "DOCKER_BIN=$docker_bin"
    echo "CONTAINERD_ADDRESS=$ctrd_sock"
    echo "CONTAINERD_SNAPSHOTTER=$snapshotter"
    echo "RECORDING_RUNTIME=$recording_name"
    echo "RECORDING_RUNTIME_DIR=$recording_dir"
  } >"$tmp"
  mv "$tmp" "$dir/env"
}

stop_one() { # name pidfile
  local name="$1" pidfile="$2"
  if ! pid_alive "$pidfile" "$name"; then rm -f "$pidfile"; return; fi
  local pid; pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; echo "stopped $name"; return; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "killed $name"
}

cmd="${1:-}"
case "$cmd" in
  start)
    [ "$(id -u)" = 0 ] || die "the daemons need root"
    mkdir -p "$dir"
    # Parallel test files may all call start; one does the work.
    exec 9>"$dir/lock"
    flock -w "$((wait_seconds * 2))" 9 || die "timed out waiting for $dir/lock"
    start_containerd
    start_dockerd
    write_env
    echo "services up: containerd $ctrd_sock, dockerd unix://$docker_sock (env in $dir/env)"
    ;;
  stop)
    mkdir -p "$dir"
    exec 9>"$dir/lock"
    flock -w "$((wait_seconds * 2))" 9 || die "timed out waiting for $dir/lock"
    stop_one dockerd "$dockerd_launch_pid"
    rm -f "$dockerd_pid"
    stop_one containerd "$ctrd_pid"
    rm -f "$dir/env"
    ;;
  status)
    status=0
    if containerd_answers; then echo "containerd: up ($ctrd_sock)"; else echo "containerd: down"; status=3; fi
    if dockerd_answers; then echo "dockerd: up (unix://$docker_sock)"; else echo "dockerd: down"; status=3; fi
    exit "$status"
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
