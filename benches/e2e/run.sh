#!/bin/bash
# benches/e2e/run.sh : end-to-end data-path benchmark (root).
#
# Builds the interop topology (a host behind each of two gateways, in network
# namespaces tbb-*) and measures, through
#   plain    plain IP routing, no tunnel (the ceiling)
#   tb-gcm   two tun-bridge gateways, ESP aes128gcm16, ESP-in-UDP (encapsulation=yes:
#            the wire format strongSwan's kernel-libipsec always uses, even without NAT)
#   tb-gcm-raw  the same with raw ESP (IP protocol 50; tun-bridge's default without NAT)
#   tb-gcm-bgp  tb-gcm as a route-based tunnel (ipsec-interface=1, interface-ip=
#            169.254.10.x/30, 0.0.0.0/0 selectors, MTU 1399 as AWS sets it) with
#            the site routes learned over BGP (BIRD 2 on both gateways)
#   ss-gcm   two strongSwan charons (kernel-libipsec = userspace ESP), aes128gcm16
#   tb-sha1  tun-bridge, AWS sample suite (IKE aes128-sha1-modp1024, ESP aes128-sha1-modp1024),
#            ESP-in-UDP
#   ss-sha1  strongSwan kernel-libipsec, same AWS suite
#   tb-gcm-v6, tb-gcm-raw-v6  tb-gcm / tb-gcm-raw with IPv6 inside and outside
#            (hosts fd00:1::2 <-> fd00:2::2, gateways fd00:c0::1 <-> fd00:c0::2)
#   tb-gcm-v6in  tb-gcm with IPv6 inner traffic over the IPv4 outer path
#   wg       wireguard-go 0.0.20231211 (bookworm-backports: the 2023 build with
#            TUN and UDP offloads; bookworm's own 2022 build has neither)
#   bt       boringtun-cli (crates.io, installed with cargo under target/)
# (v6 scenarios run tcp, cpu and lat; the UDP load generator is IPv4 only)
# the figures
#   TCP Mbit/s (iperf3, 1 and 4 streams, lhost->rhost and rhost->lhost),
#   UDP packets/s with 64- and 1400-byte IP packets: received pps at the
#     highest offered rate with loss < 1 % (benches/src/bin/udp_load, an
#     unlimited run then a bisection, see udp_search),
#   CPU per packet: user+sys CPU seconds of both gateway daemons during a
#     1-stream TCP run / packets seen on the WAN veth (us/packet), and per GB,
#   ping RTT through the idle tunnel and under a 4-stream TCP load.
# Every figure is the median of RUNS runs. The table (markdown) goes to stdout
# and to $OUT_DIR/table.md; raw values to $OUT_DIR/raw.txt.
#
# Usage:  sudo benches/e2e/run.sh                 (RUNS=3 SECS=5, ~25 min)
#         RUNS=1 SECS=3 SCENARIOS="plain tb-gcm" TESTS="tcp udp" benches/e2e/run.sh
# Environment:
#   RUNS=3 SECS=5          runs per figure, seconds per iperf3 / udp_load run
#   UDP_STEPS=6 UDP_STEP_SECS=2   bisection steps of the UDP search, seconds each
#   UDP_SENDER=send|send-gso      send-gso: the load generator hands the kernel
#                          UDP GSO super-packets (up to 64 datagrams per
#                          sendmsg, like a QUIC stack), so the sender is no
#                          longer the limit; the datagrams are the same
#   SCENARIOS="plain tb-gcm ss-gcm tb-sha1 ss-sha1 wg"
#   TESTS="tcp udp cpu lat"
#   TB_BIN_BASE=path       a second tun-bridge binary for scenarios NAME@base (e.g.
#                          SCENARIOS="tb-gcm tb-gcm@base"): before/after in one run
#   TB_BIN=path            tun-bridge binary (default: cargo build --release;
#                          udp_load is always built when TESTS has udp)
#   TB_ENCAP=yes|no        encapsulation= of tb-gcm and tb-sha1 (default yes)
#   WAN_GSO=on|off         off: turn UDP segmentation offload off on the WAN
#                          veths (ethtool), so UDP GSO super-packets are cut
#                          into wire packets in software at the sender, as
#                          on a NIC without USO, and arrive one by one
#   OUT_DIR=/tmp/tbb-bench/<time>
#   NO_INSTALL=1           do not apt-get missing packages
#
# Safety: only namespaces tbb-* and veths tbb* are created (connected only to
# each other, never to the root namespace); every iperf3/ping/udp_load is
# bounded with -t/-c/--secs and `timeout`; processes are stopped by recorded
# PID; a trap removes everything on exit.
set -u
set -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNS=${RUNS:-3}; SECS=${SECS:-5}
SCENARIOS=${SCENARIOS:-"plain tb-gcm ss-gcm tb-sha1 ss-sha1 wg"}
TESTS=${TESTS:-"tcp udp cpu lat"}
TB_ENCAP=${TB_ENCAP:-yes}
WAN_GSO=${WAN_GSO:-on}
UDP_STEPS=${UDP_STEPS:-6}; UDP_STEP_SECS=${UDP_STEP_SECS:-2}; UDP_PORT=5202
UDP_SENDER=${UDP_SENDER:-send}
OUT_DIR=${OUT_DIR:-/tmp/tbb-bench/$(date +%Y%m%d-%H%M%S)}
STATE=$OUT_DIR/state
RAW=$OUT_DIR/raw.txt
CHARON=/usr/lib/ipsec/charon
PIDS=()
NSS=(tbb-lhost tbb-left tbb-right tbb-rhost)

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
# One benchmark at a time on this machine (namespace names are fixed).
exec 9>/tmp/tbb-bench.lock
flock 9

# ------------------------------------------------------------------ install
need_pkgs() {
	local missing=()
	command -v iperf3 >/dev/null || missing+=(iperf3)
	case $(dpkg-query -W -f '${Version}' wireguard-go 2>/dev/null) in
		0.0.2023*|0.0.2024*|0.0.2025*) ;;
		*) WG_BACKPORTS=1 ;;
	esac
	command -v wg >/dev/null || missing+=(wireguard-tools)
	[ -x "$CHARON" ] || missing+=(strongswan-charon)
	command -v swanctl >/dev/null || missing+=(strongswan-swanctl)
	[ -e /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so ] ||
		missing+=(libcharon-extra-plugins libstrongswan-extra-plugins libstrongswan-standard-plugins)
	command -v perf >/dev/null || missing+=(linux-perf)
	command -v ethtool >/dev/null || missing+=(ethtool)
	command -v python3 >/dev/null || missing+=(python3)
	if [[ " $SCENARIOS " == *" bt "* ]] && ! command -v boringtun-cli >/dev/null; then
		BT_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/boringtun/bin/boringtun-cli
		if [ ! -x "$BT_BIN" ]; then
			[ "${NO_INSTALL:-0}" = 1 ] && die "boringtun-cli missing"
			log "installing boringtun-cli (cargo install, a few minutes)"
			cargo install -q --locked boringtun-cli --root "${BT_BIN%/bin/boringtun-cli}" \
				>"$OUT_DIR/boringtun.log" 2>&1 || die "cargo install boringtun-cli failed"
		fi
	fi
	case " $SCENARIOS " in *" tb-gcm-bgp "*) command -v bird >/dev/null || missing+=(bird2) ;; esac
	[ ${#missing[@]} = 0 ] && [ "${WG_BACKPORTS:-0}" = 0 ] && return 0
	[ "${NO_INSTALL:-0}" = 1 ] && die "missing packages: ${missing[*]} ${WG_BACKPORTS:+wireguard-go (bookworm-backports)}"
	if [ "${WG_BACKPORTS:-0}" = 1 ] && [ ! -e /etc/apt/sources.list.d/bookworm-backports.list ]; then
		echo "deb http://deb.debian.org/debian bookworm-backports main" \
			>/etc/apt/sources.list.d/bookworm-backports.list
	fi
	log "installing ${missing[*]} ${WG_BACKPORTS:+wireguard-go from bookworm-backports}"
	timeout 600 apt-get update -qq >/dev/null 2>&1 || true
	if [ ${#missing[@]} -gt 0 ]; then
		DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y --no-install-recommends \
			"${missing[@]}" >"$OUT_DIR/apt.log" 2>&1 || log "apt-get install failed (see $OUT_DIR/apt.log)"
	fi
	if [ "${WG_BACKPORTS:-0}" = 1 ]; then
		DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y --no-install-recommends \
			-t bookworm-backports wireguard-go >>"$OUT_DIR/apt.log" 2>&1 ||
			log "wireguard-go from bookworm-backports failed (see $OUT_DIR/apt.log)"
	fi
}
BT_BIN=$(command -v boringtun-cli || true)

# ------------------------------------------------------------- processes
kill_pid() {
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
}
stop_all() {
	local p
	for p in "${PIDS[@]}"; do kill_pid "$p"; done
	PIDS=()
}

# ------------------------------------------------------------- topology
ns_del() {
	local ns=$1 pid
	case $ns in tbb-*) ;; *) return 0 ;; esac
	if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns"; then
		# everything inside a tbb-* namespace was started by this script
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill_pid "$pid"; done
		ip netns del "$ns" 2>/dev/null || true
	fi
}
topo_down() { local n; for n in "${NSS[@]}"; do ns_del "$n"; done; }
veth() { # NS_A IF_A ADDR_A NS_B IF_B ADDR_B
	ip -n "$1" link add "$2" type veth peer name "$5" netns "$4" || die "veth $2/$5"
	ip -n "$1" addr add "$3" dev "$2"; ip -n "$4" addr add "$6" dev "$5"
	ip -n "$1" link set "$2" up; ip -n "$4" link set "$5" up
}
topo_up() {
	local n
	topo_down
	for n in "${NSS[@]}"; do
		ip netns add "$n" || die "netns add $n"
		ip -n "$n" link set lo up
		ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	done
	veth tbb-lhost tbblh0 10.1.0.2/24 tbb-left tbblh1 10.1.0.1/24
	veth tbb-left tbbl0 192.0.2.1/24 tbb-right tbbr0 192.0.2.2/24
	veth tbb-right tbbrh1 10.2.0.1/24 tbb-rhost tbbrh0 10.2.0.2/24
	ip -n tbb-lhost route add default via 10.1.0.1
	ip -n tbb-rhost route add default via 10.2.0.1
	for n in tbb-left tbb-right; do
		ip netns exec "$n" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
	done
	[[ ${SC:-} == *v6* ]] && topo_v6
	if [ "$WAN_GSO" = off ]; then
		ip netns exec tbb-left ethtool -K tbbl0 tx-udp-segmentation off >/dev/null || die "ethtool"
		ip netns exec tbb-right ethtool -K tbbr0 tx-udp-segmentation off >/dev/null || die "ethtool"
	fi
}

topo_v6() { # IPv6 on every link (inner fd00:1::/64, fd00:2::/64; WAN fd00:c0::/64)
	local n
	for n in "${NSS[@]}"; do
		ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0
	done
	for n in tbb-lhost:tbblh0 tbb-left:tbblh1 tbb-left:tbbl0 tbb-right:tbbr0 tbb-right:tbbrh1 tbb-rhost:tbbrh0; do
		ip netns exec "${n%%:*}" sysctl -qw "net.ipv6.conf.${n#*:}.disable_ipv6=0"
	done
	ip -n tbb-lhost addr add fd00:1::2/64 dev tbblh0 nodad
	ip -n tbb-left addr add fd00:1::1/64 dev tbblh1 nodad
	ip -n tbb-left addr add fd00:c0::1/64 dev tbbl0 nodad
	ip -n tbb-right addr add fd00:c0::2/64 dev tbbr0 nodad
	ip -n tbb-right addr add fd00:2::1/64 dev tbbrh1 nodad
	ip -n tbb-rhost addr add fd00:2::2/64 dev tbbrh0 nodad
	ip -n tbb-lhost -6 route add default via fd00:1::1
	ip -n tbb-rhost -6 route add default via fd00:2::1
	for n in tbb-left tbb-right; do ip netns exec "$n" sysctl -qw net.ipv6.conf.all.forwarding=1; done
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_all
	topo_down
	rm -f /var/run/wireguard/tbbwgl.sock /var/run/wireguard/tbbwgr.sock
	exit $rc
}

# ------------------------------------------------------------- tunnels
GW_PIDS=()   # gateway daemon PIDs of the current scenario (CPU accounting)

BG=  # PID of the last start_bg
start_bg() { # LOGFILE CMD... : start in background, record PID in PIDS and BG
	local logf=$1; shift
	"$@" >"$logf" 2>&1 &
	BG=$!; PIDS+=("$BG")
}

tb_conf() { # NAME AUTO LEFT RIGHT LSUB RSUB IKE ESP ENCAP
	cat <<EOF
config setup

conn bench
  auto=$2
  authby=secret
  keyexchange=ikev2
  type=tunnel
  left=$3
  right=$4
  leftsubnet=$5
  rightsubnet=$6
  ike=$7
  esp=$8
  encapsulation=$9
  dpddelay=10
  dpdtimeout=30
EOF
}

tb_up() { # IKE ESP ENCAP [OUTER=4|6 [INNER=4|6]]
	local d=$STATE/tb i pl pr st lo=192.0.2.1 ro=192.0.2.2 ls=10.1.0.0/24 rs=10.2.0.0/24
	[ "${4:-4}" = 6 ] && { lo=fd00:c0::1; ro=fd00:c0::2; }
	[ "${5:-4}" = 6 ] && { ls=fd00:1::/64; rs=fd00:2::/64; }
	mkdir -p "$d"; chmod 700 "$d"
	tb_conf b add "$ro" "$lo" "$rs" "$ls" "$1" "$2" "$3" >"$d/r.conf"
	tb_conf a start "$lo" "$ro" "$ls" "$rs" "$1" "$2" "$3" >"$d/l.conf"
	(umask 077; echo "$ro $lo : PSK \"tbb-bench-psk-0123456789\"" >"$d/r.secrets"
	 echo "$lo $ro : PSK \"tbb-bench-psk-0123456789\"" >"$d/l.secrets")
	RUST_LOG=info start_bg "$d/r.log" ip netns exec tbb-right "$TB_BIN" up --config "$d/r.conf" --secrets "$d/r.secrets" --control "$d/r.sock"; pr=$BG
	sleep 0.3
	RUST_LOG=info start_bg "$d/l.log" ip netns exec tbb-left "$TB_BIN" up --config "$d/l.conf" --secrets "$d/l.secrets" --control "$d/l.sock"; pl=$BG
	GW_PIDS=("$pl" "$pr")
	for i in $(seq 100); do
		st=$("$TB_BIN" status --json --control "$d/l.sock" 2>/dev/null | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["tunnels"][0]["state"])
except Exception: print("?")')
		[ "$st" = established ] && return 0
		kill -0 "$pl" 2>/dev/null || break
		sleep 0.2
	done
	tail -20 "$d/l.log" "$d/r.log" >&2
	die "tun-bridge tunnel did not come up"
}

# tb-gcm-bgp: route-based tunnel on ipsec1, inside 169.254.10.0/30, routes by BIRD.
tb_bgp_conf() { # AUTO LEFT RIGHT INSIDE IKE ESP ENCAP
	cat <<EOF
config setup

conn bench
  auto=$1
  authby=secret
  keyexchange=ikev2
  type=tunnel
  left=$2
  right=$3
  leftsubnet=0.0.0.0/0
  rightsubnet=0.0.0.0/0
  ipsec-interface=1
  interface-ip=$4
  ike=$5
  esp=$6
  encapsulation=$7
  dpddelay=10
  dpdtimeout=30
EOF
}
bird_conf() { # ROUTER_ID ASN NEIGHBOR PEER_ASN NETWORK
	cat <<EOF
router id $1;
protocol device { scan time 2; }
protocol kernel { scan time 2; ipv4 { import none; export where source = RTS_BGP; }; }
protocol static { ipv4; route $5 blackhole; }
protocol bgp aws {
  local $1 as $2; neighbor $3 as $4; direct; check link yes;
  hold time 30; keepalive time 10; connect delay time 1; connect retry time 3;
  ipv4 { import all; export where source = RTS_STATIC; };
}
EOF
}
tb_bgp_up() { # IKE ESP ENCAP
	local d=$STATE/tb i pl pr
	mkdir -p "$d"; chmod 700 "$d"
	tb_bgp_conf add 192.0.2.2 192.0.2.1 169.254.10.1/30 "$1" "$2" "$3" >"$d/r.conf"
	tb_bgp_conf start 192.0.2.1 192.0.2.2 169.254.10.2/30 "$1" "$2" "$3" >"$d/l.conf"
	(umask 077; echo '192.0.2.2 192.0.2.1 : PSK "tbb-bench-psk-0123456789"' >"$d/r.secrets"
	 echo '192.0.2.1 192.0.2.2 : PSK "tbb-bench-psk-0123456789"' >"$d/l.secrets")
	RUST_LOG=info start_bg "$d/r.log" ip netns exec tbb-right "$TB_BIN" up --config "$d/r.conf" --secrets "$d/r.secrets" --control "$d/r.sock"; pr=$BG
	sleep 0.3
	RUST_LOG=info start_bg "$d/l.log" ip netns exec tbb-left "$TB_BIN" up --config "$d/l.conf" --secrets "$d/l.secrets" --control "$d/l.sock"; pl=$BG
	GW_PIDS=("$pl" "$pr")
	bird_conf 169.254.10.2 65000 169.254.10.1 64512 10.1.0.0/24 >"$d/l.bird.conf"
	bird_conf 169.254.10.1 64512 169.254.10.2 65000 10.2.0.0/24 >"$d/r.bird.conf"
	start_bg "$d/l.bird.log" ip netns exec tbb-left bird -f -c "$d/l.bird.conf" -s "$d/l.bird.ctl"
	start_bg "$d/r.bird.log" ip netns exec tbb-right bird -f -c "$d/r.bird.conf" -s "$d/r.bird.ctl"
	for i in $(seq 150); do
		ip -n tbb-left route show 10.2.0.0/24 | grep -q ipsec1 &&
			ip -n tbb-right route show 10.1.0.0/24 | grep -q ipsec1 && return 0
		kill -0 "$pl" 2>/dev/null || break
		sleep 0.2
	done
	tail -20 "$d/l.log" "$d/r.log" "$d/l.bird.log" >&2
	die "tb-gcm-bgp: no BGP routes over the tunnel"
}

ss_conf() { # DIR
	local d=$1 sub
	mkdir -p "$d/run"
	for sub in x509 x509ca x509ocsp x509aa x509ac x509crl pubkey private rsa ecdsa bliss pkcs8 pkcs12; do mkdir -p "$d/$sub"; done
	cat >"$d/strongswan.conf" <<EOF
charon {
	load_modular = no
	load = random nonce openssl aes sha1 sha2 hmac gcm gmp curve25519 kdf pem pkcs1 x509 pubkey revocation constraints vici kernel-libipsec kernel-netlink socket-default updown
	routing_table = 220
	routing_table_prio = 220
	plugins {
		vici { socket = unix://$d/run/charon.vici }
	}
	filelog { bench { path = $d/charon.log
		default = 1 } }
	syslog { daemon { default = -1 } }
}
EOF
}
ss_swanctl() { # DIR LOCAL REMOTE LTS RTS IKE ESP
	cat >"$1/swanctl.conf" <<EOF
connections {
	s2s {
		version = 2
		local_addrs = $2
		remote_addrs = $3
		proposals = $6
		local { auth = psk
			id = $2 }
		remote { auth = psk
			id = $3 }
		children { net { mode = tunnel
			local_ts = $4
			remote_ts = $5
			esp_proposals = $7
			start_action = none } }
	}
}
secrets { ike-peer { id-a = $2
	id-b = $3
	secret = "tbb-bench-psk-0123456789" } }
EOF
}
ss_start() { # NS DIR -> pid in BG
	local ns=$1 d=$2 i pid
	rm -f "$d/run/charon.pid" "$d/run/charon.vici"
	start_bg "$d/charon.stdout" ip netns exec "$ns" sh -c 'mount --bind "$1/run" /run && exec env STRONGSWAN_CONF="$1/strongswan.conf" "$2"' sh "$d" "$CHARON"
	pid=$BG
	for i in $(seq 100); do
		[ -S "$d/run/charon.vici" ] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	die "charon in $ns did not start"
}
swanctl_in() { local d=$1 c=$2; shift 2; STRONGSWAN_CONF=$d/strongswan.conf swanctl "$c" --uri "unix://$d/run/charon.vici" "$@"; }
ss_up() { # IKE ESP
	local dl=$STATE/ssl dr=$STATE/ssr pl pr
	rm -rf "$dl" "$dr"; ss_conf "$dl"; ss_conf "$dr"
	ss_swanctl "$dl" 192.0.2.1 192.0.2.2 10.1.0.0/24 10.2.0.0/24 "$1" "$2"
	ss_swanctl "$dr" 192.0.2.2 192.0.2.1 10.2.0.0/24 10.1.0.0/24 "$1" "$2"
	ss_start tbb-left "$dl"; pl=$BG; ss_start tbb-right "$dr"; pr=$BG
	GW_PIDS=("$pl" "$pr")
	swanctl_in "$dl" --load-all --file "$dl/swanctl.conf" >/dev/null || die "swanctl load"
	swanctl_in "$dr" --load-all --file "$dr/swanctl.conf" >/dev/null || die "swanctl load"
	swanctl_in "$dl" --initiate --child net --timeout 20 >"$dl/initiate.out" 2>&1 || {
		tail -20 "$dl/charon.log" >&2; die "strongSwan did not come up"; }
}

wg_up() { # [DAEMON]: wireguard-go (default) or boringtun-cli, both speak the wg UAPI
	local d=$STATE/wg pl pr i daemon=${1:-wireguard-go}
	mkdir -p "$d"; chmod 700 "$d"
	(umask 077; wg genkey >"$d/l.key"; wg genkey >"$d/r.key")
	wg pubkey <"$d/l.key" >"$d/l.pub"; wg pubkey <"$d/r.key" >"$d/r.pub"
	rm -f /var/run/wireguard/tbbwgl.sock /var/run/wireguard/tbbwgr.sock
	if [ "$daemon" = wireguard-go ]; then
		start_bg "$d/l.log" ip netns exec tbb-left env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=error wireguard-go -f tbbwgl; pl=$BG
		start_bg "$d/r.log" ip netns exec tbb-right env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=error wireguard-go -f tbbwgr; pr=$BG
	else
		[ -x "$BT_BIN" ] || die "boringtun-cli not found"
		start_bg "$d/l.log" ip netns exec tbb-left "$BT_BIN" -f --disable-drop-privileges -l /dev/null tbbwgl; pl=$BG
		start_bg "$d/r.log" ip netns exec tbb-right "$BT_BIN" -f --disable-drop-privileges -l /dev/null tbbwgr; pr=$BG
	fi
	GW_PIDS=("$pl" "$pr")
	for i in $(seq 50); do
		[ -S /var/run/wireguard/tbbwgl.sock ] && [ -S /var/run/wireguard/tbbwgr.sock ] && break
		sleep 0.1
	done
	ip netns exec tbb-left wg set tbbwgl private-key "$d/l.key" listen-port 51820 \
		peer "$(cat "$d/r.pub")" endpoint 192.0.2.2:51820 allowed-ips 10.2.0.0/24 || die "wg set"
	ip netns exec tbb-right wg set tbbwgr private-key "$d/r.key" listen-port 51820 \
		peer "$(cat "$d/l.pub")" endpoint 192.0.2.1:51820 allowed-ips 10.1.0.0/24 || die "wg set"
	ip -n tbb-left link set tbbwgl up; ip -n tbb-right link set tbbwgr up
	ip -n tbb-left route add 10.2.0.0/24 dev tbbwgl
	ip -n tbb-right route add 10.1.0.0/24 dev tbbwgr
}

plain_up() {
	ip -n tbb-left route replace 10.2.0.0/24 via 192.0.2.2
	ip -n tbb-right route replace 10.1.0.0/24 via 192.0.2.1
	GW_PIDS=()
}

scenario_up() {
	# NAME@base: the same tun-bridge scenario with the TB_BIN_BASE binary
	# (a before/after comparison inside one run).
	local tb_bin=$TB_BIN
	if [[ $1 == *@base ]]; then
		[ -n "${TB_BIN_BASE:-}" ] || die "$1 needs TB_BIN_BASE"
		TB_BIN=$TB_BIN_BASE
		scenario_up "${1%@base}"
		local rc=$?
		TB_BIN=$tb_bin
		return $rc
	fi
	case $1 in
		plain) plain_up ;;
		tb-gcm) tb_up aes128gcm16-prfsha256-modp2048 aes128gcm16 "$TB_ENCAP" ;;
		tb-gcm-raw) tb_up aes128gcm16-prfsha256-modp2048 aes128gcm16 no ;;
		tb-gcm-v6) tb_up aes128gcm16-prfsha256-modp2048 aes128gcm16 yes 6 6 ;;
		tb-gcm-raw-v6) tb_up aes128gcm16-prfsha256-modp2048 aes128gcm16 no 6 6 ;;
		tb-gcm-v6in) tb_up aes128gcm16-prfsha256-modp2048 aes128gcm16 "$TB_ENCAP" 4 6 ;;
		tb-gcm-bgp) tb_bgp_up aes128gcm16-prfsha256-modp2048 aes128gcm16 "$TB_ENCAP" ;;
		tb-sha1) tb_up aes128-sha1-modp1024 aes128-sha1-modp1024 "$TB_ENCAP" ;;
		ss-gcm) ss_up aes128gcm16-prfsha256-modp2048 aes128gcm16 ;;
		ss-sha1) ss_up aes128-sha1-modp1024 aes128-sha1-modp1024 ;;
		wg) wg_up wireguard-go ;;
		bt) wg_up boringtun-cli ;;
		*) die "unknown scenario $1" ;;
	esac
	local i
	for i in $(seq 20); do
		ip netns exec tbb-lhost timeout 3 ping -c 1 -W 1 "$DST" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	die "$1: no ping through the tunnel"
}

# ------------------------------------------------------------- measurements
rec() { echo "$SC $*" >>"$RAW"; } # rec METRIC VALUE

iperf_json() { # CLIENT_NS SERVER_NS SERVER_IP SECS ARGS... -> JSON on stdout
	local cns=$1 sns=$2 sip=$3 t=$4 spid i; shift 4
	ip netns exec "$sns" timeout $((t + 20)) iperf3 -s -1 -B "$sip" -p 5201 >/dev/null 2>&1 &
	spid=$!; PIDS+=("$spid")
	for i in $(seq 50); do
		ip netns exec "$sns" ss -ltnu 2>/dev/null | grep -qF -e "$sip:5201" -e "[$sip]:5201" && break
		sleep 0.1
	done
	ip netns exec "$cns" timeout $((t + 15)) iperf3 -c "$sip" -p 5201 -t "$t" -J "$@" 2>/dev/null
	wait "$spid" 2>/dev/null
}

tcp_mbps() { python3 -c 'import json,sys
try: print("%.1f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6))
except Exception: print("FAIL")'; }

test_tcp() {
	local p r i v
	for p in 1 4; do
		for r in 0 1; do
			for i in $(seq "$RUNS"); do
				if [ $r = 1 ]; then v=$(iperf_json tbb-lhost tbb-rhost "$DST" "$SECS" -P $p -R | tcp_mbps)
				else v=$(iperf_json tbb-lhost tbb-rhost "$DST" "$SECS" -P $p | tcp_mbps); fi
				rec "tcp_${p}_$r" "$v"
				log "$SC tcp streams=$p reverse=$r run=$i: $v Mbit/s"
			done
		done
	done
}

# UDP packets/s with benches/src/bin/udp_load (recvmmsg receiver in
# tbb-rhost, paced sendmmsg sender in tbb-lhost). SIZE is the IP packet size
# (20 IPv4 + 8 UDP + payload); DF is set, so a packet above the path MTU is
# an EMSGSIZE error at the sender, never a fragment. Every datagram carries
# a sequence number and a run id (stale datagrams of an earlier run are not
# counted); loss = 1 - distinct sequence numbers received / datagrams sent.
# Functions run in this shell (no $(...)) so PIDS sees the receiver.
U_OK=0 U_SENT=0 U_SPPS=0 U_PPS=0 U_LOSS=100 U_EMSG=0 U_ERR=0 U_PMTU=0 U_SKIP=0
# U_OK=1: sent > 0, no EMSGSIZE, loss < 1 % and (paced) the sender kept at
# least 97 % of the offered rate (on 2 shared cores it may not: then the
# rate was not really offered and the run does not count).
udp_once() { # SIZE RATE(pps, 0 = unlimited) SECS -> U_*
	local size=$1 rate=$2 t=$3 rid rpid i rj=$STATE/udp_recv.json sj=$STATE/udp_send.json
	rid=$(date +%s%N)
	: >"$rj"; : >"$sj"
	ip netns exec tbb-rhost timeout $((t + 8)) "$UDP_LOAD" recv --bind "10.2.0.2:$UDP_PORT" \
		--secs "$t" --run-id "$rid" >"$rj" 2>>"$OUT_DIR/udp_load.err" &
	rpid=$!; PIDS+=("$rpid")
	for i in $(seq 50); do
		ip netns exec tbb-rhost ss -lun 2>/dev/null | grep -q "10.2.0.2:$UDP_PORT" && break
		sleep 0.1
	done
	ip netns exec tbb-lhost timeout $((t + 8)) "$UDP_LOAD" "$UDP_SENDER" --to "10.2.0.2:$UDP_PORT" \
		--size "$size" --pps "$rate" --secs "$t" --run-id "$rid" >"$sj" 2>>"$OUT_DIR/udp_load.err"
	wait "$rpid" 2>/dev/null
	forget_pid "$rpid"
	{ echo "# $SC size=$size rate=$rate secs=$t"; cat "$sj" "$rj"; } >>"$OUT_DIR/udp_runs.txt"
	python3 - "$sj" "$rj" >"$STATE/udp_once.out" <<'EOF'
import json, sys
try:
    s = json.load(open(sys.argv[1])); r = json.load(open(sys.argv[2]))
    sent, uniq = s["sent"], r["unique"]
    loss = 100.0 * (1 - uniq / sent) if sent else 100.0
    kept = s["target_pps"] == 0 or s["pps"] >= 0.97 * s["target_pps"]
    ok = 1 if sent > 0 and s["emsgsize"] == 0 and loss < 1.0 and kept else 0
    print(ok, sent, "%.0f" % s["pps"], "%.0f" % r["pps"], "%.3f" % loss, s["emsgsize"], s["errors"],
          s["path_mtu"] or 0, s["skipped"])
except Exception:
    print("0 0 0 0 100 0 0 0 0")
EOF
	read -r U_OK U_SENT U_SPPS U_PPS U_LOSS U_EMSG U_ERR U_PMTU U_SKIP <"$STATE/udp_once.out"
	log "$SC udp size=$size offered=$([ "$rate" = 0 ] && echo unlimited || echo "${rate}pps") ${t}s:" \
		"sent=$U_SENT (${U_SPPS}pps) recv=${U_PPS}pps loss=$U_LOSS% errors=$U_ERR (emsgsize $U_EMSG) skipped=$U_SKIP ok=$U_OK"
}
forget_pid() { # PID: drop a reaped PID from PIDS (the number may be reused)
	local p keep=()
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

# Highest rate with loss < 1 % at SIZE -> UDP_RESULT="pps sender_limited size"
# (received pps of the accepted run) or FAIL.
# 1. An unlimited run of SECS: loss < 1 % means the path forwarded all the
#    sender could offer -> report that, marked sender-limited.
# 2. Otherwise bisect the offered rate with runs of UDP_STEP_SECS: a first
#    run at hi = 1.1 x the unlimited run's received pps; if it loses < 1 %
#    (overload can push the received rate below the knee), UDP_STEPS
#    halvings of [hi, the sender's unlimited rate], else of [0, hi]. Then
#    confirm the highest good rate with a run of SECS (lowered by 10 % up to
#    4 times while it fails). An accepted rate within 5 % of the
#    sender's unlimited rate is marked sender-limited too.
# A packet above the path MTU (EMSGSIZE) is measured again at the path MTU.
udp_search() { # SIZE
	local size=$1 st lo=0 hi smax mid k rate
	st=$(( UDP_STEP_SECS < SECS ? UDP_STEP_SECS : SECS ))
	UDP_RESULT=FAIL
	udp_once "$size" 0 "$SECS"
	if [ "$U_EMSG" -gt 0 ]; then
		if [ "$U_PMTU" -ge 44 ] && [ "$U_PMTU" -lt "$size" ]; then
			log "$SC udp size=$size: above the path MTU $U_PMTU (DF set), measuring ${U_PMTU}-byte packets instead"
			udp_search "$U_PMTU"
		else
			log "$SC udp size=$size: EMSGSIZE with path MTU $U_PMTU"
		fi
		return
	fi
	if [ "$U_SENT" = 0 ]; then log "$SC udp size=$size: nothing sent (see $OUT_DIR/udp_load.err)"; return; fi
	if [ "$U_OK" = 1 ]; then UDP_RESULT="$U_PPS 1 $size"; return; fi
	smax=$U_SPPS
	hi=$(( U_PPS * 11 / 10 )); [ "$hi" -ge 1000 ] || hi=1000
	udp_once "$size" "$hi" "$st"
	if [ "$U_OK" = 1 ]; then
		lo=$hi; [ "$smax" -gt "$hi" ] && hi=$smax
	fi
	for k in $(seq "$UDP_STEPS"); do
		[ $(( (hi - lo) * 200 )) -ge "$hi" ] || break   # bracket < 0.5 %
		mid=$(( (lo + hi) / 2 ))
		udp_once "$size" "$mid" "$st"
		if [ "$U_OK" = 1 ]; then lo=$mid; else hi=$mid; fi
	done
	rate=$lo
	for k in 1 2 3 4 5; do
		[ "$rate" -ge 100 ] || break
		udp_once "$size" "$rate" "$SECS"
		if [ "$U_OK" = 1 ]; then
			UDP_RESULT="$U_PPS $(( rate * 100 >= smax * 95 ? 1 : 0 )) $size"; return
		fi
		rate=$(( rate * 9 / 10 ))
	done
}

test_udp() {
	local s i pps lim sz
	for s in 64 1400; do
		for i in $(seq "$RUNS"); do
			udp_search "$s"
			if [ "$UDP_RESULT" = FAIL ]; then
				rec "udp_$s" FAIL
				log "$SC udp size=$s run=$i: FAIL"
				continue
			fi
			read -r pps lim sz <<<"$UDP_RESULT"
			rec "udp_$s" "$pps"
			rec "udp_${s}_sender_limited" "$lim"
			[ "$sz" = "$s" ] || rec "udp_${s}_size" "$sz"
			log "$SC udp size=$s run=$i: $pps pps with loss < 1 % (${sz}-byte IP packets$([ "$lim" = 1 ] && echo ', sender-limited'))"
		done
	done
}

cpu_ticks() { # sum of utime+stime (all threads) of GW_PIDS, in clock ticks
	local p t=0 v
	for p in "${GW_PIDS[@]}"; do
		v=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)
		t=$((t + v))
	done
	echo "$t"
}
wan_pkts() { ip netns exec tbb-left awk '/tbbl0:/ {print $3+$11}' /proc/net/dev; }
wan_bytes() { ip netns exec tbb-right awk '/tbbrh1:/ {print $10}' /proc/net/dev; }

gw_ticks() { # per-gateway utime+stime ticks, space separated
	local p
	for p in "${GW_PIDS[@]}"; do awk '{printf "%d ", $14+$15}' "/proc/$p/stat" 2>/dev/null || printf '0 '; done
}
machine_ticks() { awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat; } # total idle

test_cpu() {
	local i c0 c1 p0 p1 b0 b1 hz g0 g1 m0 m1 t0 t1
	[ ${#GW_PIDS[@]} = 0 ] && return 0
	hz=$(getconf CLK_TCK)
	for i in $(seq "$RUNS"); do
		c0=$(cpu_ticks); p0=$(wan_pkts); b0=$(wan_bytes); g0=$(gw_ticks); m0=$(machine_ticks); t0=$(date +%s.%N)
		iperf_json tbb-lhost tbb-rhost "$DST" "$SECS" -P 1 >/dev/null
		c1=$(cpu_ticks); p1=$(wan_pkts); b1=$(wan_bytes); g1=$(gw_ticks); m1=$(machine_ticks); t1=$(date +%s.%N)
		rec cpu_us_per_pkt "$(python3 -c "print('%.2f' % (($c1-$c0)/$hz*1e6/max($p1-$p0,1)))")"
		rec cpu_s_per_gb "$(python3 -c "print('%.2f' % (($c1-$c0)/$hz/max(($b1-$b0)/1e9,1e-9)))")"
		# How busy the whole machine was (all cores), and the busiest
		# gateway in % of one core: a gateway well below 100 % on a
		# machine near 100 % is not limited by being single-threaded.
		rec machine_busy_pct "$(python3 -c "a='$m0'.split(); b='$m1'.split(); t=int(b[0])-int(a[0]); print('%.0f' % (100.0*(t-(int(b[1])-int(a[1])))/max(t,1)))")"
		rec gw_max_core_pct "$(python3 -c "a='$g0'.split(); b='$g1'.split(); w=$t1-$t0; print('%.0f' % max(100.0*(int(y)-int(x))/$hz/w for x,y in zip(a,b)))")"
		log "$SC cpu run=$i: $(( (c1 - c0) )) ticks, $((p1 - p0)) WAN packets, $((b1 - b0)) inner bytes, gateways [$g0] -> [$g1]"
	done
}

ping_median() { python3 -c 'import re,sys,statistics
v=[float(m.group(1)) for m in re.finditer(r"time=([0-9.]+)", sys.stdin.read())]
print("%.3f" % statistics.median(v) if v else "FAIL")'; }

test_lat() {
	local i n spid v
	n=$((SECS * 10))
	for i in $(seq "$RUNS"); do
		v=$(ip netns exec tbb-lhost timeout $((SECS + 10)) ping -c "$n" -i 0.1 -W 2 "$DST" 2>/dev/null | ping_median)
		rec lat_idle_ms "$v"
		( iperf_json tbb-lhost tbb-rhost "$DST" $((SECS + 2)) -P 4 >/dev/null ) &
		spid=$!; PIDS+=("$spid")
		sleep 1
		v=$(ip netns exec tbb-lhost timeout $((SECS + 10)) ping -c "$n" -i 0.1 -W 2 "$DST" 2>/dev/null | ping_median)
		wait "$spid" 2>/dev/null
		rec lat_load_ms "$v"
		log "$SC latency run=$i: idle $(tail -2 "$RAW" | head -1 | cut -d' ' -f3) ms, loaded $v ms"
	done
}

# ------------------------------------------------------------- table
table() {
	python3 - "$RAW" "$SCENARIOS" "$RUNS" "$SECS" <<'EOF'
import sys, statistics
raw, scen, runs, secs = sys.argv[1], list(dict.fromkeys(sys.argv[2].split())), sys.argv[3], sys.argv[4]
vals = {}
for line in open(raw):
    p = line.split()
    if len(p) != 3: continue
    vals.setdefault((p[0], p[1]), []).append(p[2])
def med(s, m):
    v = [float(x) for x in vals.get((s, m), []) if x != "FAIL"]
    return statistics.median(v) if v else None
rows = [("tcp_1_0", "TCP 1 stream lhost->rhost, Mbit/s", 0),
        ("tcp_4_0", "TCP 4 streams lhost->rhost, Mbit/s", 0),
        ("tcp_1_1", "TCP 1 stream rhost->lhost, Mbit/s", 0),
        ("tcp_4_1", "TCP 4 streams rhost->lhost, Mbit/s", 0),
        ("udp_64", "UDP 64 B IP packets, pps (loss < 1 %)", 0),
        ("udp_1400", "UDP 1400 B IP packets, pps (loss < 1 %)", 0),
        ("cpu_us_per_pkt", "CPU us / WAN packet (both gateways)", 1),
        ("cpu_s_per_gb", "CPU s / GB (both gateways)", 1),
        ("gw_max_core_pct", "busiest gateway, % of one core (1-stream TCP)", 1),
        ("machine_busy_pct", "whole machine busy, % (1-stream TCP)", 1),
        ("lat_idle_ms", "ping RTT idle, ms", 1),
        ("lat_load_ms", "ping RTT under 4-stream TCP, ms", 1)]
ratios = [("tb-gcm", "ss-gcm"), ("tb-sha1", "ss-sha1"), ("tb-gcm", "wg"), ("tb-gcm", "bt"),
          ("tb-gcm-raw", "ss-gcm"), ("tb-gcm-v6", "tb-gcm"), ("tb-gcm-raw-v6", "tb-gcm-raw"),
          ("tb-gcm-v6in", "tb-gcm"), ("tb-gcm", "plain"),
          ("tb-gcm-bgp", "tb-gcm"),
          ("tb-gcm", "tb-gcm@base"), ("tb-gcm-raw", "tb-gcm-raw@base")]
ratios = [r for r in ratios if r[0] in scen and r[1] in scen]
hdr = ["metric (median of %s x %s s)" % (runs, secs)] + scen + ["%s / %s" % r for r in ratios]
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
def fmt(x, m):
    if x is None: return "-"
    if m.startswith("lat") or m.startswith("cpu"): return "%.2f" % x
    return "%.0f" % x
notes = set()
def cell(s, m):
    x = med(s, m)
    t = fmt(x, m)
    if x is not None and m.startswith("udp_"):
        sizes = sorted(set(vals.get((s, m + "_size"), [])))
        if sizes:
            t += " (%s B)" % "/".join(sizes); notes.add("size")
        if "1" in vals.get((s, m + "_sender_limited"), []):
            t += " *"; notes.add("sender")
    return t
for m, name, lower in rows:
    if not any((s, m) in vals for s in scen): continue
    cells = [name] + [cell(s, m) for s in scen]
    for a, b in ratios:
        x, y = med(a, m), med(b, m)
        cells.append("%.2fx" % (x / y) if x and y else "-")
    print("| " + " | ".join(cells) + " |")
if "sender" in notes:
    print("\n\\* sender-limited (in at least one run): the unlimited run lost < 1 %,"
          " so the figure is the load generator's ceiling, not the path's.")
if "size" in notes:
    print("\n(N B): the path MTU is below the row's packet size (DF is set);"
          " measured with N-byte IP packets.")
EOF
}

# ------------------------------------------------------------- main
mkdir -p "$STATE"; : >"$RAW"
trap cleanup EXIT
trap 'exit 130' INT TERM
need_pkgs
BUILD=()
[ -z "${TB_BIN:-}" ] && [[ " $SCENARIOS " == *" tb-"* ]] && BUILD+=(-p tun-bridge --bin tun-bridge)
[[ " $TESTS " == *" udp "* ]] && BUILD+=(-p ipsec-benches --bin udp_load)
if [ ${#BUILD[@]} -gt 0 ]; then
	log "building (release): ${BUILD[*]}"
	(cd "$ROOT" && cargo build --release -q "${BUILD[@]}") || die "cargo build failed"
fi
[ -z "${TB_BIN:-}" ] && [[ " $SCENARIOS " == *" tb-"* ]] && TB_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/tun-bridge
UDP_LOAD=${CARGO_TARGET_DIR:-$ROOT/target}/release/udp_load
log "runs=$RUNS secs=$SECS scenarios=[$SCENARIOS] tests=[$TESTS] out=$OUT_DIR kernel=$(uname -r) nproc=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg)"
{
	echo "# $(date -Is) runs=$RUNS secs=$SECS kernel=$(uname -r) nproc=$(nproc) tb_encap=$TB_ENCAP wan_gso=$WAN_GSO udp_sender=$UDP_SENDER"
	[ -n "${TB_BIN:-}" ] && echo "# tun-bridge $TB_BIN $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)"
	[[ " $SCENARIOS " == *" wg "* ]] && echo "# wireguard-go $(dpkg-query -W -f '${Version}' wireguard-go 2>/dev/null)"
	[[ " $SCENARIOS " == *" bt "* ]] && echo "# boringtun-cli $("$BT_BIN" --version 2>/dev/null)"
} >"$OUT_DIR/header.txt"
for SC in $SCENARIOS; do # a name given twice runs twice; the table pools its runs
	log "=== $SC"
	DST=10.2.0.2
	[[ $SC == *v6* ]] && DST=fd00:2::2
	topo_up
	scenario_up "$SC"
	for t in $TESTS; do
		if [ "$t" = udp ] && [ "$DST" != 10.2.0.2 ]; then log "$SC: udp skipped (IPv4 load generator)"; continue; fi
		"test_$t"
	done
	stop_all
	topo_down
done
{ cat "$OUT_DIR/header.txt"; echo; table; } | tee "$OUT_DIR/table.md"
log "raw values: $RAW"
