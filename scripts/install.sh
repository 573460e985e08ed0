#!/usr/bin/env bash
# Installs latticed as a systemd service: the binary, the unit, and the name
# of route protocol 171 for iproute2.
#
#   scripts/install.sh                      # build in release and install under /usr/local
#   scripts/install.sh --binary PATH        # install an existing binary
#   scripts/install.sh --prefix DIR --unit-dir DIR --iproute-dir DIR --no-enable
#
# It enables and starts the service only when systemd is running (and not
# with --no-enable).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
prefix=/usr/local
unit_dir=/etc/systemd/system
iproute_dir=/etc/iproute2/rt_protos.d
binary=
enable=1

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --unit-dir) unit_dir=$2; shift 2 ;;
    --iproute-dir) iproute_dir=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --no-enable) enable=0; shift ;;
    -h|--help) usage 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage 2 ;;
  esac
done

if [ -z "$binary" ]; then
  # The etcd client (cluster mode) generates its gRPC code with protoc.
  if ! command -v protoc >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends protobuf-compiler
  fi
  (cd "$here/.." && cargo build --release --package latticed)
  binary="$here/../target/release/latticed"
fi
[ -x "$binary" ] || { echo "install.sh: $binary is not an executable" >&2; exit 1; }

install -D -m 0755 "$binary" "$prefix/bin/latticed"
mkdir -p "$unit_dir"
sed -e "s|/usr/local/bin/latticed|$prefix/bin/latticed|" \
    "$here/latticed.service" > "$unit_dir/latticed.service"
chmod 0644 "$unit_dir/latticed.service"
mkdir -p "$iproute_dir"
echo "171 latticed" > "$iproute_dir/latticed.conf"

echo "installed $prefix/bin/latticed and $unit_dir/latticed.service"
if [ "$enable" = 1 ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --now latticed.service
  echo "latticed enabled and started: journalctl -u latticed -f"
  echo "manage it: AWS_SHARED_CREDENTIALS_FILE=/var/lib/latticed/admin-credentials aws --region us-east-1 --endpoint-url http://127.0.0.1:7390 vpc-lattice list-services"
elif [ "$enable" = 1 ]; then
  echo "systemd is not running here: start it with 'systemctl enable --now latticed' on a systemd host"
fi
