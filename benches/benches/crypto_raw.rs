//! Raw crypto cost per packet: seal + open through the `Cipher` trait for
//! every suite at 64, 512, 1420 and 8192 bytes, plus the backend comparisons
//! recorded in docs/CRYPTO_BACKEND.md (ring vs RustCrypto `aes-gcm` for
//! AES-128-GCM, `ring::hmac` vs RustCrypto `hmac` for the integrity
//! transforms).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ipsec_core::crypto::{Cipher, Suite};

const SIZES: [usize; 4] = [64, 512, 1420, 8192];

fn keyed(suite: Suite) -> Box<dyn Cipher> {
    let ek = vec![0x11; suite.enc_key_len().expect("supported suite")];
    let ik = vec![0x22; suite.integ_key_len()];
    suite.cipher(&ek, &ik).expect("valid keys")
}

fn suites(c: &mut Criterion) {
    let mut g = c.benchmark_group("seal_open");
    for suite in Suite::ALL {
        let cipher = keyed(suite);
        let header = [0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1];
        let mut iv = vec![0u8; cipher.iv_len()];
        let mut icv = vec![0u8; cipher.icv_len()];
        for len in SIZES {
            // Round up to the cipher's block so CBC accepts it (1420 -> 1424).
            let bl = cipher.block_len();
            let mut payload = vec![0x5au8; len.div_ceil(bl) * bl];
            let mut seq = 0u64;
            g.throughput(Throughput::Bytes(len as u64));
            g.bench_function(BenchmarkId::new(suite.name(), len), |b| {
                b.iter(|| {
                    seq += 1;
                    cipher
                        .seal(&header, None, seq, &mut iv, &mut payload, &mut icv)
                        .expect("seal");
                    cipher
                        .open(&header, None, &iv, black_box(&mut payload), &icv)
                        .expect("open");
                })
            });
        }
    }
    g.finish();
}

fn gcm_backends(c: &mut Criterion) {
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    const LEN: usize = 1420;
    let mut g = c.benchmark_group("aes128gcm_backend");
    g.throughput(Throughput::Bytes(LEN as u64));
    let aad = [0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1];

    let cipher = keyed(Suite::AES128_GCM16);
    let mut iv = [0u8; 8];
    let mut icv = [0u8; 16];
    let mut payload = vec![0x5au8; LEN];
    let mut seq = 0u64;
    g.bench_function(BenchmarkId::new("ring", LEN), |b| {
        b.iter(|| {
            seq += 1;
            cipher
                .seal(&aad, None, seq, &mut iv, &mut payload, &mut icv)
                .expect("seal");
            cipher
                .open(&aad, None, &iv, black_box(&mut payload), &icv)
                .expect("open");
        })
    });

    let rc = aes_gcm::Aes128Gcm::new(&[0x11u8; 16].into());
    let mut payload = vec![0x5au8; LEN];
    let mut seq = 0u64;
    g.bench_function(BenchmarkId::new("rustcrypto_aes_gcm", LEN), |b| {
        b.iter(|| {
            seq += 1;
            let mut nonce = [0x22u8; 12];
            nonce[4..].copy_from_slice(&seq.to_be_bytes());
            let tag = rc
                .encrypt_in_place_detached(&nonce.into(), &aad, &mut payload)
                .expect("seal");
            rc.decrypt_in_place_detached(&nonce.into(), &aad, black_box(&mut payload), &tag)
                .expect("open");
        })
    });
    g.finish();
}

fn hmac_backends(c: &mut Criterion) {
    use hmac::{Hmac, Mac};
    fn rustcrypto<M: Mac + Clone>(m: &M, data: &[u8]) -> usize {
        let mut m = m.clone();
        m.update(data);
        m.finalize().into_bytes().len()
    }
    let mut g = c.benchmark_group("hmac_backend");
    for len in [64usize, 1420] {
        let data = vec![0x5au8; len];
        g.throughput(Throughput::Bytes(len as u64));
        let algs: [(&str, ring::hmac::Algorithm, usize); 3] = [
            ("sha1", ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, 20),
            ("sha256", ring::hmac::HMAC_SHA256, 32),
            ("sha512", ring::hmac::HMAC_SHA512, 64),
        ];
        for (name, alg, klen) in algs {
            let key = vec![0x33u8; klen];
            let rk = ring::hmac::Key::new(alg, &key);
            g.bench_function(BenchmarkId::new(format!("ring_{name}"), len), |b| {
                b.iter(|| ring::hmac::sign(&rk, black_box(&data)))
            });
            g.bench_function(
                BenchmarkId::new(format!("rustcrypto_{name}"), len),
                |b| match name {
                    "sha1" => {
                        let m = Hmac::<sha1::Sha1>::new_from_slice(&key).expect("key");
                        b.iter(|| rustcrypto(&m, black_box(&data)))
                    }
                    "sha256" => {
                        let m = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
                        b.iter(|| rustcrypto(&m, black_box(&data)))
                    }
                    _ => {
                        let m = Hmac::<sha2::Sha512>::new_from_slice(&key).expect("key");
                        b.iter(|| rustcrypto(&m, black_box(&data)))
                    }
                },
            );
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500));
    targets = suites, gcm_backends, hmac_backends
}
criterion_main!(benches);
