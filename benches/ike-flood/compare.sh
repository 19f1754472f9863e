#!/usr/bin/env bash
# compare.sh: the same IKE_SA_INIT flood against tun-bridge and against
# strongSwan's charon, in the same run, with cookies on in both; prints a
# table: requests sent per second, answers per second (what the responder
# absorbed), answers by type, RSS before / peak / after.
#
#   sudo benches/ike-flood/compare.sh [--count N] [--secs S] [--rate PPS] [--profile release|debug] [--no-build] [--answer-cookies]
#
# With --answer-cookies the generator sends every request again with its
# cookie, as a botnet with real addresses would: each responder then does
# a Diffie-Hellman per request up to its per-source and global limits.
#
# Everything runs in two network namespaces created here (flood-cmp-<pid>-r
# with the responder, flood-cmp-<pid>-g with the generator, joined by one
# veth pair); the generator's sources (198.18.0.0/16, RFC 2544) are routed
# back to it. Processes are stopped by PID and the namespaces deleted on
# exit. Each flood is bounded by --secs (the generator stops by itself).
#
# Cookies on: tun-bridge `ddos-mode=busy` (always); charon
# `cookie_threshold = 1` and `cookie_threshold_ip = 1` (from the first
# half-open SA on, and for 10 s after; charon has no "always" setting).
set -euo pipefail

COUNT=200000
SECS=10
RATE=0
PROFILE=release
BUILD=1
ANSWER=()
while [ $# -gt 0 ]; do
	case $1 in
		--count) COUNT=$2; shift ;;
		--secs) SECS=$2; shift ;;
		--rate) RATE=$2; shift ;;
		--profile) PROFILE=$2; shift ;;
		--no-build) BUILD=0 ;;
		--answer-cookies) ANSWER=(--answer-cookies) ;;
		*) echo "unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
CHARON=/usr/lib/ipsec/charon
[ -x "$CHARON" ] && command -v swanctl >/dev/null || {
	echo "needs strongSwan (apt-get install strongswan-charon strongswan-swanctl libcharon-extra-plugins)" >&2
	exit 2
}

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
flag=()
[ "$PROFILE" = release ] && flag=(--release)
if [ "$BUILD" = 1 ]; then
	(cd "$ROOT" && cargo build -q "${flag[@]}" -p tun-bridge --bin tun-bridge -p ipsec-benches --bin ike_flood)
fi
TB=$TARGET/$PROFILE/tun-bridge
GEN=$TARGET/$PROFILE/ike_flood

NS_R=flood-cmp-$$-r
NS_G=flood-cmp-$$-g
DIR=$(mktemp -d /tmp/flood-cmp.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 0.5
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	ip netns del "$NS_R" 2>/dev/null || true
	ip netns del "$NS_G" 2>/dev/null || true
	[ -n "${KEEP:-}" ] || rm -rf "$DIR"
}
trap cleanup EXIT

RESP=10.210.0.1
ip netns add "$NS_R"
ip netns add "$NS_G"
ip -n "$NS_R" link set lo up
ip -n "$NS_G" link set lo up
ip -n "$NS_R" link add fl-r0 type veth peer name fl-g0 netns "$NS_G"
ip -n "$NS_R" addr add $RESP/24 dev fl-r0
ip -n "$NS_G" addr add 10.210.0.2/24 dev fl-g0
ip -n "$NS_R" link set fl-r0 up
ip -n "$NS_G" link set fl-g0 up
ip -n "$NS_R" route add 198.18.0.0/15 via 10.210.0.2

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# sample_peak PID FILE: writes the highest VmRSS (KiB) seen to FILE until killed.
sample_peak() {
	local pid=$1 out=$2 peak=0 r
	while kill -0 "$pid" 2>/dev/null; do
		r=$(rss_kib "$pid")
		[ "${r:-0}" -gt "$peak" ] && { peak=$r; echo "$peak" >"$out"; }
		sleep 0.05
	done
}

# flood NAME PID: runs the generator against $RESP, prints one table row.
flood() {
	local name=$1 pid=$2 before peak after json spid
	sleep 1
	before=$(rss_kib "$pid")
	echo "$before" >"$DIR/$name.peak"
	sample_peak "$pid" "$DIR/$name.peak" &
	spid=$!
	json=$(ip netns exec "$NS_G" timeout $((SECS + 30)) "$GEN" --netns "$NS_G" --iface fl-g0 \
		--dst $RESP --src-net 198.18.0.0/16 --count "$COUNT" --secs "$SECS" --rate "$RATE" --linger-ms 2000 "${ANSWER[@]}")
	sleep 1
	kill "$spid" 2>/dev/null || true
	wait "$spid" 2>/dev/null || true
	peak=$(cat "$DIR/$name.peak")
	after=$(rss_kib "$pid")
	echo "$json" >"$DIR/$name.json"
	python3 - "$name" "$before" "$peak" "$after" "$json" <<'EOF'
import json, sys
name, before, peak, after, j = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
secs = j["send_secs"]
r = j["responses"]
print("| %s | %d | %.0f | %.0f | %d / %d / %d | %d | %.1f / %.1f / %.1f MiB (+%.1f) |" % (
    name, j["sent"], j["sent"] / secs, j["answered"] / secs, r["cookie"], r["sa_init"], r["other"],
    j["none"], before / 1024, peak / 1024, after / 1024, (peak - before) / 1024))
EOF
}

echo "ike_flood: $COUNT IKE_SA_INIT requests within ${SECS}s (rate $RATE, 0 = as fast as possible), 65,536 sources, cookies $([ ${#ANSWER[@]} -gt 0 ] && echo answered || echo 'not answered'); $PROFILE build"
echo "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| responder | sent | sent/s | answered/s (absorbed) | answers cookie / SA_INIT / other | unanswered | RSS before / peak / after (growth) |"
echo "|---|---|---|---|---|---|---|"

# --- tun-bridge -----------------------------------------------------------
cat >"$DIR/tb.conf" <<EOF
config setup
	ddos-mode=busy
conn flood
	auto=add
	left=$RESP
	right=%any
	rightid=@peer.example
	leftsubnet=10.1.0.0/24
	rightsubnet=10.2.0.0/24
	authby=secret
	keyexchange=ikev2
	ike=aes256gcm16-prfsha256-curve25519
	esp=aes256gcm16
EOF
printf '%s %s : PSK "flood-compare-psk-0123456789"\n' "$RESP" "@peer.example" >"$DIR/tb.secrets"
chmod 600 "$DIR/tb.secrets"
ip netns exec "$NS_R" "$TB" up --config "$DIR/tb.conf" --secrets "$DIR/tb.secrets" \
	--control "$DIR/tb.sock" >"$DIR/tb.log" 2>&1 &
TB_PID=$!
PIDS+=("$TB_PID")
for _ in $(seq 100); do [ -S "$DIR/tb.sock" ] && break; sleep 0.1; done
[ -S "$DIR/tb.sock" ] || { cat "$DIR/tb.log" >&2; exit 1; }
flood tun-bridge "$TB_PID"
"$TB" status --control "$DIR/tb.sock" | sed -n '/^ike:/,$p' >"$DIR/tb.status"
kill "$TB_PID"; wait "$TB_PID" 2>/dev/null || true

# --- strongSwan -------------------------------------------------------------
SD=$DIR/swan
mkdir -p "$SD/run"
# swanctl --load-all scans these credential directories next to its file.
for sub in x509 x509ca x509ocsp x509aa x509ac x509crl pubkey private rsa ecdsa bliss pkcs8 pkcs12; do
	mkdir -p "$SD/$sub"
done
cat >"$SD/strongswan.conf" <<EOF
charon {
	load_modular = no
	load = random nonce openssl aes sha1 sha2 hmac gcm gmp curve25519 kdf pem pkcs1 x509 pubkey revocation constraints vici kernel-libipsec kernel-netlink socket-default updown
	install_routes = no
	cookie_threshold = 1
	cookie_threshold_ip = 1
	plugins {
		vici {
			socket = unix://$SD/run/charon.vici
		}
	}
	filelog {
		flood {
			path = $SD/charon.log
			default = 0
		}
	}
	syslog {
		daemon {
			default = -1
		}
	}
}
EOF
cat >"$SD/swanctl.conf" <<EOF
connections {
	flood {
		version = 2
		local_addrs = $RESP
		remote_addrs = %any
		proposals = aes256gcm16-prfsha256-curve25519
		local {
			auth = psk
		}
		remote {
			auth = psk
			id = peer.example
		}
		children {
			net {
				local_ts = 10.1.0.0/24
				remote_ts = 10.2.0.0/24
				esp_proposals = aes256gcm16
			}
		}
	}
}
secrets {
	ike-flood {
		id = peer.example
		secret = "flood-compare-psk-0123456789"
	}
}
EOF
ip netns exec "$NS_R" sh -c 'mount --bind "$1/run" /run && exec env STRONGSWAN_CONF="$1/strongswan.conf" "$2"' \
	sh "$SD" "$CHARON" >"$SD/charon.stdout" 2>&1 &
SW_PID=$!
PIDS+=("$SW_PID")
for _ in $(seq 100); do [ -S "$SD/run/charon.vici" ] && break; sleep 0.1; done
[ -S "$SD/run/charon.vici" ] || { cat "$SD/charon.stdout" >&2; exit 1; }
STRONGSWAN_CONF=$SD/strongswan.conf swanctl --load-all --file "$SD/swanctl.conf" \
	--uri "unix://$SD/run/charon.vici" >/dev/null
SW_VER=$(STRONGSWAN_CONF=$SD/strongswan.conf swanctl --version --uri "unix://$SD/run/charon.vici" 2>/dev/null |
	grep -o '[0-9][0-9.]*' | head -1 || true)
flood "strongSwan ${SW_VER:-charon}" "$SW_PID"
kill "$SW_PID"; wait "$SW_PID" 2>/dev/null || true

echo
echo "tun-bridge's counters after its flood:"
cat "$DIR/tb.status"
