#!/usr/bin/env bash
# A recording OCI runtime for the engine tests: it stands where urunc would
# and saves what an engine hands its runtime. At `create` it keeps, under
# $LAPIN_RECORDINGS (default: recordings/ next to this script)/<container id>/:
#   config.json  the bundle's runtime spec, byte for byte
#   rootfs.txt   one line per rootfs entry: type, mode, size, path
#   urunc.json   the rootfs's /urunc.json, when it has one
#   argv.txt     the arguments the engine passed, one a line
# then fails with a marker line, so no container starts. A Kubernetes pod
# sandbox (the pause container) is handed to runc, since the CRI needs it
# running; every other command (state, kill, delete, start, --version...)
# goes to runc with the arguments as given, so the engines clean up as usual.
set -u
runc_bin="${LAPIN_RECORDING_RUNC:-runc}"
here="$(cd "$(dirname "$0")" && pwd)"
recordings="${LAPIN_RECORDINGS:-$here/recordings}"
marker="lapin-recording-runtime: recorded"

args=("$@")
command=""
bundle="."
log_file=""
log_format="text"
id=""
i=0
# runc's global flags come before the command; create's own flags after it.
while [ $i -lt ${#args[@]} ]; do
  arg="${args[$i]}"
  if [ -z "$command" ]; then
    case "$arg" in
      --log) i=$((i + 1)); log_file="${args[$i]:-}" ;;
      --log=*) log_file="${arg#--log=}" ;;
      --log-format) i=$((i + 1)); log_format="${args[$i]:-}" ;;
      --log-format=*) log_format="${arg#--log-format=}" ;;
      --root | --criu | --rootless) i=$((i + 1)) ;;
      -*) ;;
      *) command="$arg" ;;
    esac
  elif [ "$command" = create ]; then
    case "$arg" in
      --bundle | -b) i=$((i + 1)); bundle="${args[$i]:-.}" ;;
      --bundle=*) bundle="${arg#--bundle=}" ;;
      --pid-file | --console-socket | --preserve-fds) i=$((i + 1)) ;;
      -*) ;;
      *) id="$arg" ;;
    esac
  fi
  i=$((i + 1))
done

if [ "$command" != create ]; then exec "$runc_bin" "$@"; fi

fail() { # message: where the engines look for a runtime's error
  if [ -n "$log_file" ] && [ "$log_format" = json ]; then
    jq -cn --arg msg "$1" '{level: "error", msg: $msg, time: (now | todate)}' >>"$log_file"
  elif [ -n "$log_file" ]; then
    echo "$1" >>"$log_file"
  fi
  echo "$1" >&2
  exit 1
}

[ -n "$id" ] || fail "lapin-recording-runtime: create without a container id"
[ -f "$bundle/config.json" ] || fail "lapin-recording-runtime: no config.json in bundle $bundle"
out="$recordings/$id"
mkdir -p "$out" || fail "lapin-recording-runtime: cannot write $out"
cp -- "$bundle/config.json" "$out/config.json"
printf '%s\n' "$@" >"$out/argv.txt"
root="$(jq -r '.root.path // "rootfs"' "$bundle/config.json")"
case "$root" in /*) ;; *) root="$bundle/$root" ;; esac
(cd "$root" && find . -mindepth 1 -printf '%y %m %s /%P\n' | LC_ALL=C sort -k4) >"$out/rootfs.txt.tmp"
mv "$out/rootfs.txt.tmp" "$out/rootfs.txt"
if [ -f "$root/urunc.json" ] && [ ! -L "$root/urunc.json" ]; then cp -- "$root/urunc.json" "$out/urunc.json"; fi

container_type="$(jq -r '.annotations["io.kubernetes.cri.container-type"] // ""' "$bundle/config.json")"
if [ "$container_type" = sandbox ]; then
  touch "$out/handed-to-runc"
  exec "$runc_bin" "$@"
fi
touch "$out/done"
fail "$marker $id"
