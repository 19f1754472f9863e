#!/usr/bin/env python3
"""Turns a strongswan_ikev1_capture.sh run (the initiator's charon.log at
ike=4 and the pcap) into one key = hex record of strongswan_ikev1_psk.txt.
Usage: strongswan_ikev1_extract.py DIR IKEPROP ESPPROP PSK COMMENT"""
import re, struct, sys

def dumps(path):
    """[(name, bytes)] for every 'NAME => N bytes @ 0x..' hexdump in order."""
    out, lines = [], open(path, encoding='latin-1').read().splitlines()
    hdr = re.compile(r'\] <[^>]*> (.*) => (\d+) bytes @ 0x[0-9a-f]+$')
    row = re.compile(r'\] <[^>]*>\s+(\d+): (.*)$')
    i = 0
    while i < len(lines):
        m = hdr.search(lines[i]); i += 1
        if not m:
            continue
        name, n = m.group(1), int(m.group(2)); data = b''
        while len(data) < n:
            r = row.search(lines[i]); i += 1
            assert r and int(r.group(1)) == len(data), lines[i - 1]
            k = min(16, n - len(data))
            data += bytes.fromhex(r.group(2)[:3 * k - 1])
        out.append((name, data))
    return out

def udp_payloads(path):
    b = open(path, 'rb').read()
    assert struct.unpack('<I', b[:4])[0] == 0xa1b2c3d4
    off, out = 24, []
    while off < len(b):
        _, _, incl, _ = struct.unpack('<IIII', b[off:off + 16]); off += 16
        pkt = b[off:off + incl]; off += incl
        if pkt[12:14] != b'\x08\x00' or pkt[23] != 17:
            continue
        ihl = (pkt[14] & 15) * 4
        u = pkt[14 + ihl:]
        sport, dport, ulen = struct.unpack('>HHH', u[:6])
        src = '.'.join(map(str, pkt[26:30]))
        out.append((src, sport, dport, u[8:ulen]))
    return out

d, suite, esp, psk, desc = sys.argv[1:6]
dl = dumps(d + '/left/charon.log')
def one(name):
    v = [x for n, x in dl if n == name]
    assert len(v) == 1, (name, len(v))
    return v[0]
def opt(name):
    v = [x for n, x in dl if n == name]
    assert len(v) <= 1, (name, len(v))
    return v[0] if v else b''
pk = udp_payloads(d + '/ike.pcap')
ike, espp = [], []
for src, sp, dp, p in pk:
    if dp == 500:
        ike.append(p)
    elif p[:4] == b'\0\0\0\0':
        ike.append(p[4:])
    elif len(p) > 1:
        espp.append((src, p))
assert len(ike) >= 9 and len(espp) == 2, (len(ike), len(espp))
h = lambda b: b.hex()
print(f'# {desc}')
print(f'suite = {suite}')
print(f'esp = {esp}')
print(f'psk = {h(psk.encode())}')
for k in range(6):
    print(f'mm{k + 1} = {h(ike[k])}')
for k in range(3):
    print(f'qm{k + 1} = {h(ike[6 + k])}')
assert espp[0][0] == '192.0.2.1' and espp[1][0] == '192.0.2.2'
print(f'esp_i2r = {h(espp[0][1])}')
print(f'esp_r2i = {h(espp[1][1])}')
print(f'gxy = {h(one("shared Diffie Hellman secret"))}')
for k in ['SKEYID', 'SKEYID_d', 'SKEYID_a', 'SKEYID_e']:
    print(f'{k.lower()} = {h(one(k))}')
print(f'ka = {h(one("encryption key Ka"))}')
print(f'iv1 = {h(one("initial IV"))}')
print(f'hash_i = {h(one("HASH_I"))}')
print(f'hash_r = {h(one("HASH_R"))}')
for k in range(1, 4):
    print(f'qm_hash{k} = {h(one(f"Hash({k})"))}')
print(f'g_qm = {h(opt("DH secret"))}')
print(f'enc_i = {h(one("encryption initiator key"))}')
print(f'enc_r = {h(one("encryption responder key"))}')
print(f'integ_i = {h(opt("integrity initiator key"))}')
print(f'integ_r = {h(opt("integrity responder key"))}')
