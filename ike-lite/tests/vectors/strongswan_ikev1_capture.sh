#!/bin/bash
# One IKEv1 main mode + quick mode PSK exchange between two strongSwan charons
# (namespaces pa-ikev1l / pa-ikev1r), charon logging at ike=4 / enc=4 (prints
# the DH secret, SKEYID, SKEYID_d/a/e, the encryption key and IVs, KEYMAT),
# tcpdump of the veth, one ping through the tunnel.
# Usage (root): strongswan_ikev1_capture.sh NAME IKEPROP ESPPROP PSK
# then: strongswan_ikev1_extract.py /tmp/ikev1-kat/NAME IKEPROP ESPPROP PSK 'comment'
# Needs the peer harness helpers (ns_add, veth_pair, ss_write_conf, ss_start,
# swanctl_in, kill_pid) of /work/shared/peers/lib/common.sh; COMMON overrides.
set -u
. "${COMMON:-/work/shared/peers/lib/common.sh}"
PA_STATE=/tmp/ikev1-kat
NAME=$1; IKE=$2; ESP=$3; PSK=$4
D=$PA_STATE/$NAME; DL=$D/left; DR=$D/right
rm -rf "$D"; mkdir -p "$DL" "$DR"
cleanup() { trap - EXIT INT TERM; for p in "${PA_PIDS[@]}"; do kill_pid "$p"; done; ns_del pa-ikev1l; ns_del pa-ikev1r; }
trap cleanup EXIT
ns_add pa-ikev1l; ns_add pa-ikev1r
veth_pair pa-ikev1l paikev1l0 192.0.2.1/24 pa-ikev1r paikev1r0 192.0.2.2/24
ip -n pa-ikev1l addr add 10.1.0.1/24 dev lo; ip -n pa-ikev1r addr add 10.2.0.1/24 dev lo
wr() {
cat >"$1/swanctl.conf" <<EOC
connections {
	kat {
		version = 1
		aggressive = no
		local_addrs = $2
		remote_addrs = $3
		proposals = $IKE
		local { auth = psk
			id = $2 }
		remote { auth = psk
			id = $3 }
		children {
			net {
				mode = tunnel
				local_ts = $4
				remote_ts = $5
				esp_proposals = $ESP
				start_action = none
			}
		}
	}
}
secrets {
	ike-peer { id-a = $2
		id-b = $3
		secret = "$PSK" }
}
EOC
}
for d in "$DL" "$DR"; do
	ss_write_conf "$d"
	sed -i -e 's/^\t\t\tike = 1$/\t\t\tike = 4\n\t\t\tlib = 4\n\t\t\tenc = 4\n\t\t\tchd = 4/' "$d/strongswan.conf"
done
wr "$DL" 192.0.2.1 192.0.2.2 10.1.0.0/24 10.2.0.0/24
wr "$DR" 192.0.2.2 192.0.2.1 10.2.0.0/24 10.1.0.0/24
ip netns exec pa-ikev1l tcpdump -Z root -nni paikev1l0 -U -w "$D/ike.pcap" udp >"$D/tcpdump.out" 2>&1 &
TPID=$!; PA_PIDS+=("$TPID"); sleep 1
ss_start pa-ikev1l "$DL" >/dev/null
ss_start pa-ikev1r "$DR" >/dev/null
swanctl_in "$DL" --load-all --file "$DL/swanctl.conf" >/dev/null || die "load left"
swanctl_in "$DR" --load-all --file "$DR/swanctl.conf" >/dev/null || die "load right"
swanctl_in "$DL" --initiate --child net --timeout 20 >"$D/initiate.out" 2>&1 || { cat "$D/initiate.out"; die "initiate failed"; }
ip netns exec pa-ikev1l ping -c 1 -W 2 -I 10.1.0.1 10.2.0.1 > "$D/ping.out" 2>&1 || echo "ping failed" >&2
swanctl_in "$DL" --list-sas > "$D/sas.txt"
sleep 1
kill_pid "$TPID"
/usr/lib/ipsec/charon --version > "$D/version.txt" 2>&1 || true
echo OK "$D"
