#!/usr/bin/env bash
# Installs what `make demo` and `make test` need and is missing: redis-server (apt), a Go toolchain
# (apt, if none is on PATH), and what the local cluster's real nodes run and build images with
# (containerd, runc, the CNI plugins, buildah, BusyBox, iptables, gcc, and debootstrap for the project
# image's local base images: docs/local-cluster.md).
# Each problem is one line saying what is wrong and how to fix it.
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin"

have() { command -v "$1" >/dev/null 2>&1; }
apt_install() {
  if [ "$(id -u)" != 0 ] || ! have apt-get; then
    echo "missing: $1; install it with your package manager (Debian: apt-get install $1)" >&2
    exit 1
  fi
  [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

have node || { echo "missing: Node.js 20 or newer" >&2; exit 1; }
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
  { echo "Node.js $(node --version) is too old: install Node.js 20 or newer" >&2; exit 1; }
have redis-server || apt_install redis-server
# Real nodes: each binary, and the Debian package that ships it.
for pair in containerd:containerd runc:runc ctr:containerd buildah:buildah busybox:busybox-static \
  iptables:iptables gcc:gcc ip:iproute2 debootstrap:debootstrap; do
  have "${pair%%:*}" || [ -x "/usr/sbin/${pair%%:*}" ] || apt_install "${pair#*:}"
done
[ -x /usr/lib/cni/bridge ] || apt_install containernetworking-plugins
have go || apt_install golang-go
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
if [ "${go_minor:-0}" -lt 25 ]; then
  echo "Go $(go env GOVERSION) is too old to build Kubernetes v1.35: install Go 1.25 or newer and put it first on PATH" >&2
  exit 1
fi
