//! `--log-keys`: negotiated keys in Wireshark's formats (debugging only).
//!
//! ESP SAs are appended as `esp_sa` UAT lines:
//! `"IPv4","src","dst","0xSPI","<encryption>","0x<key>","<integrity>","0x<key>"`.
//! ike-lite does not expose IKE SA keys (SK_e*/SK_a*), so no
//! `ikev2_decryption_table` lines are written. The file is created 0600.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ipsec_core::crypto::{EncrId, IntegId, Suite};

/// An open key log.
#[derive(Debug)]
pub struct KeyLog {
    file: File,
}

fn encr_name(s: &Suite) -> &'static str {
    match s.encr {
        EncrId::AES_GCM_16 => "AES-GCM with 16 octet ICV [RFC4106]",
        EncrId::AES_CBC => "AES-CBC [RFC3602]",
        EncrId::NULL => "NULL",
        _ => "unknown",
    }
}

fn integ_name(s: &Suite) -> &'static str {
    match s.integ {
        IntegId::NONE => "NULL",
        IntegId::HMAC_SHA1_96 => "HMAC-SHA-1-96 [RFC2404]",
        IntegId::HMAC_SHA2_256_128 => "HMAC-SHA-256-128 [RFC4868]",
        IntegId::HMAC_SHA2_384_192 => "HMAC-SHA-384-192 [RFC4868]",
        IntegId::HMAC_SHA2_512_256 => "HMAC-SHA-512-256 [RFC4868]",
        _ => "unknown",
    }
}

fn hex(out: &mut String, b: &[u8]) {
    use std::fmt::Write as _;
    out.push_str("0x");
    for x in b {
        let _ = write!(out, "{x:02x}");
    }
}

/// One `esp_sa` UAT line (no newline). `enc_key` includes the GCM salt.
pub fn esp_sa_line(
    src: IpAddr,
    dst: IpAddr,
    spi: u32,
    suite: &Suite,
    enc_key: &[u8],
    integ_key: &[u8],
) -> zeroize::Zeroizing<String> {
    let mut s = zeroize::Zeroizing::new(String::with_capacity(256));
    let fam = if src.is_ipv4() { "IPv4" } else { "IPv6" };
    s.push_str(&format!(
        "\"{fam}\",\"{src}\",\"{dst}\",\"0x{spi:08x}\",\"{}\",\"",
        encr_name(suite)
    ));
    hex(&mut s, enc_key);
    s.push_str(&format!("\",\"{}\",\"", integ_name(suite)));
    if !integ_key.is_empty() {
        hex(&mut s, integ_key);
    }
    s.push('"');
    s
}

impl KeyLog {
    /// Opens `path` for appending, creating it with mode 0600.
    pub fn open(path: &Path) -> io::Result<KeyLog> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        Ok(KeyLog { file })
    }

    /// Appends one ESP SA.
    pub fn esp_sa(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        spi: u32,
        suite: &Suite,
        enc_key: &[u8],
        integ_key: &[u8],
    ) -> io::Result<()> {
        let mut l = esp_sa_line(src, dst, spi, suite, enc_key, integ_key);
        l.push('\n');
        self.file.write_all(l.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn lines_and_mode() {
        let l = esp_sa_line(
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            0xc0ffee01,
            &Suite::AES128_GCM16,
            &[0xab; 20],
            &[],
        );
        assert_eq!(
            l.as_str(),
            "\"IPv4\",\"192.0.2.1\",\"192.0.2.2\",\"0xc0ffee01\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"0xabababababababababababababababababababab\",\"NULL\",\"\""
        );
        let l = esp_sa_line(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            0x100,
            &Suite::AES128_CBC_HMAC_SHA1_96,
            &[1; 16],
            &[2; 20],
        );
        assert!(l.starts_with("\"IPv6\""));
        assert!(l.contains("\"AES-CBC [RFC3602]\""));
        assert!(l.ends_with(
            "\"HMAC-SHA-1-96 [RFC2404]\",\"0x0202020202020202020202020202020202020202\""
        ));
        let dir = std::env::temp_dir().join(format!("tb-keylog-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let mut k = KeyLog::open(&dir).unwrap();
        k.esp_sa(
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            1000,
            &Suite::AES128_GCM16,
            &[0; 20],
            &[],
        )
        .unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&dir).unwrap().lines().count(), 1);
        std::fs::remove_file(&dir).unwrap();
    }
}
