#!/usr/bin/env bash
# Try wasp as CNI plugin + node daemon on this machine without changing it: a "node" network namespace
# (wasp-try-node) runs `dist/wasp daemon`, and podman, run inside the same network namespace and with
# everything redirected into one directory (CONTAINERS_CONF: cni_plugin_dirs, network_config_dir,
# storage), starts containers whose network the wasp plugin makes. Nothing outside the namespace and
# the directory changes (runc keeps its state in /run/runc, as for any podman container).
#
# The runtime and the daemon must share the network namespace (the daemon declines a call from
# another one: the plugin must make the pod's links where the runtime is) and see the same sandbox
# paths (/run/netns/...: podman and the daemon both run in this machine's mount namespace, entered
# with `nsenter --net=`, never `ip netns exec`, which makes a mount namespace of its own).
#
#   bash scripts/try-cni.sh          all of it: up, run, status, then down (also when a step fails)
#   bash scripts/try-cni.sh up       the node, the daemon, a backend container "web" (busybox httpd on
#                                    8080) behind the ClusterIP 10.96.0.10:80; a failed up removes what it made
#   bash scripts/try-cni.sh run      a client container: its address and routes, then the ClusterIP
#   bash scripts/try-cni.sh status   wasp status (the CNI socket's calls among it)
#   bash scripts/try-cni.sh doctor   wasp doctor, no flags: it finds the conflist dir through CONTAINERS_CONF
#   bash scripts/try-cni.sh down     removes the containers, stops the daemon, deletes the namespace and the directory
# WASP_TRY_DIR (default /tmp/wasp-try) is the directory, WASP_TRY_NS (default wasp-try-node) the
# namespace, WASP_TRY_OFFLOAD (default auto) the daemon's --offload. containerd's ctr is no choice
# here: it reads only /etc/cni/net.d and /opt/cni/bin, which are the host's (README.md, "Try wasp as
# CNI plugin and daemon on one machine"). Needs root, dist/ (npm run build, or
# scripts/install-deps.sh), podman, runc and busybox-static (scripts/install-deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
W=${WASP_TRY_DIR:-/tmp/wasp-try}
NS=${WASP_TRY_NS:-wasp-try-node}
SOCK=$W/run/wasp.sock
CNI_SOCK=$W/run/cni.sock
export CONTAINERS_CONF=$W/containers.conf
trap 'exit 130' INT TERM
podman_() {
  nsenter --net=/var/run/netns/$NS podman --root "$W/podman/root" --runroot "$W/podman/run" --storage-driver vfs --runtime runc "$@"
}
# root here often lacks CAP_SYS_RESOURCE: podman's default ulimits (above the hard limit) would fail
RUN_OPTS=(--ulimit nofile=1024:1024 --ulimit nproc=1000:1000 --network waspnet --rootfs "$W/rootfs")

config() { # config BACKEND_IP...: the daemon's node config, ClusterIP 10.96.0.10:80 -> :8080 of each
  local backends="" ip
  for ip in "$@"; do backends="$backends{\"ip\":\"$ip\"},"; done
  cat > "$W/config.json.tmp" <<EOF
{ "mode": "tun",
  "node": { "name": "try-node", "underlayIP": "10.99.0.1", "podCIDR": "10.244.1.0/24" },
  "serviceCIDR": "10.96.0.0/16", "clusterCIDR": "10.244.0.0/16",
  "services": [ { "name": "web", "clusterIP": "10.96.0.10",
                  "ports": [ { "port": 80, "protocol": "TCP", "targetPort": 8080 } ],
                  "backends": [ ${backends%,} ] } ] }
EOF
  mv "$W/config.json.tmp" "$W/config.json"
}

up() {
  [ "$(id -u)" = 0 ] || { echo "try-cni: run as root (a network namespace, a TUN device)" >&2; exit 1; }
  for c in podman runc busybox nsenter; do command -v $c > /dev/null || { echo "try-cni: $c is missing; run bash scripts/install-deps.sh" >&2; exit 1; }; done
  [ -x dist/wasp ] || { echo "try-cni: dist/wasp is missing; run bash scripts/install-deps.sh (or npm run build)" >&2; exit 1; }
  if [ -e "/var/run/netns/$NS" ]; then echo "try-cni: $NS exists already; bash scripts/try-cni.sh down first" >&2; exit 1; fi
  if [ -e "$W" ]; then echo "try-cni: $W exists already (a run that was not taken down?); bash scripts/try-cni.sh down removes it" >&2; exit 1; fi
  # a step that fails (set -e), Ctrl-C or a kill ends the script through EXIT: remove what up made
  trap 'echo "try-cni: up did not finish; removing what it made" >&2; down' EXIT
  mkdir -p "$W"/{bin,net.d,run,tmp,podman,rootfs/bin,rootfs/proc,rootfs/sys,rootfs/dev,rootfs/etc,rootfs/tmp,rootfs/run,rootfs/www}
  # the plugin as a runtime finds it: the front door and what it runs, in the runtime's CNI bin dir
  # (links: the front door finds wasp-node beside the file it resolves to)
  for f in wasp wasp-node wasp_native.node; do ln -s "$ROOT/dist/$f" "$W/bin/$f"; done
  # the conflist names the daemon's CNI socket, so every call reaches it (podman's cleanup DEL too)
  cat > "$W/net.d/10-wasp.conflist" <<EOF
{ "cniVersion": "1.0.0", "name": "waspnet",
  "plugins": [ { "type": "wasp", "podCIDR": "10.244.1.0/24", "dataDir": "$W/ipam", "cniSocket": "$CNI_SOCK" } ] }
EOF
  cat > "$CONTAINERS_CONF" <<EOF
[containers]
netns = "bridge"
[network]
network_backend = "cni"
cni_plugin_dirs = ["$W/bin", "/usr/lib/cni"]
network_config_dir = "$W/net.d"
default_network = "waspnet"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$W/events.log"
tmp_dir = "$W/tmp"
EOF
  cp "$(command -v busybox)" "$W/rootfs/bin/busybox"
  for a in sh ip ping nc httpd cat sleep; do ln -sf busybox "$W/rootfs/bin/$a"; done
  echo 'root:x:0:0:root:/:/bin/sh' > "$W/rootfs/etc/passwd"; echo 'root:x:0:' > "$W/rootfs/etc/group"
  echo "hello from the wasp-try backend" > "$W/rootfs/www/index.html"

  ip netns add $NS
  ip -n $NS link set lo up
  ip -n $NS addr add 10.99.0.1/32 dev lo   # the node's address (no underlay: a single node)
  config
  nsenter --net=/var/run/netns/$NS "$ROOT/dist/wasp" daemon --config "$W/config.json" --socket "$SOCK" --cni-socket "$CNI_SOCK" \
    --offload "${WASP_TRY_OFFLOAD:-auto}" --metrics-port 0 --healthz-bind-address "" > "$W/daemon.log" 2>&1 &
  echo $! > "$W/daemon.pid"
  for _ in $(seq 100); do [ -S "$CNI_SOCK" ] && break; sleep 0.2; done
  [ -S "$CNI_SOCK" ] || { echo "try-cni: the daemon did not start; its log:" >&2; tail -n 20 "$W/daemon.log" >&2; exit 1; }
  echo "try-cni: daemon (pid $(cat "$W/daemon.pid")) in $NS; log $W/daemon.log"
  podman_ run -d --name wasp-try-web "${RUN_OPTS[@]}" /bin/httpd -f -p 8080 -h /www > "$W/web.id"
  local web
  web=$(podman_ inspect -f '{{.NetworkSettings.Networks.waspnet.IPAddress}}' wasp-try-web)
  config "$web"
  echo "try-cni: container wasp-try-web at $web serves 8080 behind the ClusterIP 10.96.0.10:80"
  trap - EXIT
  echo "try-cni: next: bash scripts/try-cni.sh run; bash scripts/try-cni.sh status; bash scripts/try-cni.sh down"
}

run() {
  # busybox's wget needs a resolver the rootfs lacks: nc speaks the HTTP
  podman_ run --rm "${RUN_OPTS[@]}" /bin/sh -c 'ip addr show eth0 | grep inet; ip route; printf "GET / HTTP/1.0\r\n\r\n" | nc -w 5 10.96.0.10 80'
}

status() {
  nsenter --net=/var/run/netns/$NS "$ROOT/dist/wasp" status --socket "$SOCK"
}

doctor() {
  nsenter --net=/var/run/netns/$NS "$ROOT/dist/wasp" doctor --socket "$SOCK"
}

down() { # every step goes on when one fails: what exists is removed
  if [ -e "/var/run/netns/$NS" ] && [ -f "$CONTAINERS_CONF" ]; then
    podman_ rm -f -t 2 wasp-try-web > /dev/null 2>&1 || true
    # podman rm has been seen to return while the container's conmon lives on: end it by its container id
    local id="" pids=""
    id=$(cat "$W/web.id" 2> /dev/null || true)
    [ -z "$id" ] || pids=$(pgrep -f "conmon .*-c $id" || true)
    [ -z "$pids" ] || kill -KILL $pids $(for p in $pids; do pgrep -P "$p"; done) 2> /dev/null || true
  fi
  if [ -f "$W/daemon.pid" ]; then
    local pid
    pid=$(cat "$W/daemon.pid")
    kill -TERM "$pid" 2> /dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2> /dev/null || true
  fi
  ip netns del "$NS" 2> /dev/null || true   # wasp0, its rules and routes go with the namespace
  # a container's /dev/shm that podman left mounted under the directory
  local m
  for m in $(awk -v w="$W/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do umount "$m" 2> /dev/null || true; done
  rm -rf "$W"
  echo "try-cni: removed $NS and $W"
}

case "${1:-all}" in
  all) up; trap down EXIT; run; status ;;
  up) up ;;
  run) run ;;
  status) status ;;
  doctor) doctor ;;
  down) down ;;
  *) echo "usage: bash scripts/try-cni.sh [all|up|run|status|doctor|down]" >&2; exit 2 ;;
esac
