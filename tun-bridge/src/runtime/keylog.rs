//! `--log-keys`: negotiated keys in Wireshark's formats (debugging only).
//!
//! ESP SAs are appended as `esp_sa` UAT lines:
//! `"IPv4","src","dst","0xSPI","<encryption>","0x<key>","<integrity>","0x<key>"`.
//! IKE SAs are appended as `ikev2_decryption_table` UAT lines (the layout
//! strongSwan's save-keys plugin writes too):
//! `SPIi,SPIr,SK_ei,SK_er,"<encryption>",SK_ai,SK_ar,"<integrity>"`, SPIs as
//! 16 hex digits, keys as bare hex (empty SK_a for AES-GCM), the quoted
//! names from Wireshark's packet-isakmp.c (`vs_ikev2_encr_algs`,
//! `vs_ikev2_auth_algs`).
//!
//! IKEv1 ISAKMP SAs are appended as `ikev1_decryption_table` UAT lines:
//! `<initiator cookie>,<encryption key Ka>`, both bare hex.
//!
//! Wireshark keeps the tables in separate files, so `--log-keys PATH`
//! writes `PATH/esp_sa` and `PATH/ikev2_decryption_table` when PATH is a
//! directory (point it at a copy of a Wireshark profile), else ESP lines to
//! PATH and IKE lines to `PATH.ikev2_decryption_table`; IKEv1 lines go to
//! `ikev1_decryption_table` beside them, created at the first IKEv1 SA.
//! Files are created 0600.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ike_lite::IkeSaSecrets;
use ipsec_core::crypto::{EncrId, IntegId, Suite};
use zeroize::Zeroizing;

/// An open key log.
#[derive(Debug)]
pub struct KeyLog {
    file: File,
    ike: File,
    /// `ikev1_decryption_table`, opened at the first IKEv1 SA.
    ikev1: Option<File>,
    ikev1_path: PathBuf,
}

/// Where `--log-keys PATH` puts the `ikev1_decryption_table` file.
pub fn ikev1_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("ikev1_decryption_table")
    } else {
        let mut p = path.as_os_str().to_owned();
        p.push(".ikev1_decryption_table");
        PathBuf::from(p)
    }
}

/// One `ikev1_decryption_table` UAT line (no newline).
pub fn ikev1_line(s: &ike_lite::v1::IsakmpSaSecrets) -> Zeroizing<String> {
    let mut l = Zeroizing::new(format!("{:016x},", s.cookie_i));
    bare_hex(&mut l, &s.enc_key);
    l
}

fn open_private(p: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(p)
}

/// Where `--log-keys PATH` puts the (esp_sa, ikev2_decryption_table) files.
pub fn paths(path: &Path) -> (PathBuf, PathBuf) {
    if path.is_dir() {
        (path.join("esp_sa"), path.join("ikev2_decryption_table"))
    } else {
        let mut ike = path.as_os_str().to_owned();
        ike.push(".ikev2_decryption_table");
        (path.to_path_buf(), PathBuf::from(ike))
    }
}

/// Wireshark's name of an IKEv2 SK encryption algorithm.
fn ike_encr_name(s: &Suite) -> Option<&'static str> {
    Some(match (s.encr, s.encr_key_bits) {
        (EncrId::AES_GCM_16, 128) => "AES-GCM-128 with 16 octet ICV [RFC5282]",
        (EncrId::AES_GCM_16, 192) => "AES-GCM-192 with 16 octet ICV [RFC5282]",
        (EncrId::AES_GCM_16, 256) => "AES-GCM-256 with 16 octet ICV [RFC5282]",
        (EncrId::AES_CBC, 128) => "AES-CBC-128 [RFC3602]",
        (EncrId::AES_CBC, 192) => "AES-CBC-192 [RFC3602]",
        (EncrId::AES_CBC, 256) => "AES-CBC-256 [RFC3602]",
        (EncrId::NULL, _) => "NULL [RFC2410]",
        _ => return None,
    })
}

/// Wireshark's name of an IKEv2 SK integrity algorithm.
fn ike_integ_name(s: &Suite) -> Option<&'static str> {
    Some(match s.integ {
        IntegId::NONE => "NONE [RFC4306]",
        IntegId::HMAC_SHA1_96 => "HMAC_SHA1_96 [RFC2404]",
        IntegId::HMAC_SHA2_256_128 => "HMAC_SHA2_256_128 [RFC4868]",
        IntegId::HMAC_SHA2_384_192 => "HMAC_SHA2_384_192 [RFC4868]",
        IntegId::HMAC_SHA2_512_256 => "HMAC_SHA2_512_256 [RFC4868]",
        _ => return None,
    })
}

fn bare_hex(out: &mut String, b: &[u8]) {
    use std::fmt::Write as _;
    for x in b {
        let _ = write!(out, "{x:02x}");
    }
}

/// One `ikev2_decryption_table` UAT line (no newline); `None` when
/// Wireshark has no name for the SK algorithms.
pub fn ikev2_line(s: &IkeSaSecrets) -> Option<Zeroizing<String>> {
    let suite = &s.algorithms.suite;
    let (encr, integ) = (ike_encr_name(suite)?, ike_integ_name(suite)?);
    let mut l = Zeroizing::new(String::with_capacity(256));
    l.push_str(&format!("{:016x},{:016x},", s.spi_i, s.spi_r));
    bare_hex(&mut l, &s.sk_ei);
    l.push(',');
    bare_hex(&mut l, &s.sk_er);
    l.push_str(&format!(",\"{encr}\","));
    bare_hex(&mut l, &s.sk_ai);
    l.push(',');
    bare_hex(&mut l, &s.sk_ar);
    l.push_str(&format!(",\"{integ}\""));
    Some(l)
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
    /// Opens the files of `path` (see [`paths`]) for appending, creating
    /// them with mode 0600.
    pub fn open(path: &Path) -> io::Result<KeyLog> {
        let open = |p: &Path| {
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(p)
        };
        let (esp, ike) = paths(path);
        Ok(KeyLog {
            file: open(&esp)?,
            ike: open(&ike)?,
            ikev1: None,
            ikev1_path: ikev1_path(path),
        })
    }

    /// Appends one IKEv1 ISAKMP SA.
    pub fn isakmp_sa(&mut self, s: &ike_lite::v1::IsakmpSaSecrets) -> io::Result<()> {
        let f = match &mut self.ikev1 {
            Some(f) => f,
            None => self.ikev1.insert(open_private(&self.ikev1_path)?),
        };
        let mut l = ikev1_line(s);
        l.push('\n');
        f.write_all(l.as_bytes())
    }

    /// Appends one IKE SA.
    pub fn ike_sa(&mut self, s: &IkeSaSecrets) -> io::Result<()> {
        let mut l = ikev2_line(s).ok_or_else(|| {
            io::Error::other(format!(
                "no Wireshark name for IKE algorithms {}",
                s.algorithms
            ))
        })?;
        l.push('\n');
        self.ike.write_all(l.as_bytes())
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
    fn ikev1_table() {
        let s = ike_lite::v1::IsakmpSaSecrets {
            conn: ike_lite::ConnId(0),
            cookie_i: 0x0123_4567_89ab_cdef,
            cookie_r: 1,
            algorithms: ike_lite::proposal::IkeChoice {
                suite: Suite::AES128_CBC_HMAC_SHA1_96,
                prf: ike_lite::crypto::PrfId::HMAC_SHA1,
                dh: ike_lite::crypto::DhGroup::MODP_1024,
            },
            enc_key: ike_lite::crypto::SecretBytes::new(vec![0xa5; 16]),
        };
        assert_eq!(
            ikev1_line(&s).as_str(),
            "0123456789abcdef,a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5"
        );
        let base = std::env::temp_dir().join(format!("tb-keylog-v1-{}", std::process::id()));
        let mut k = KeyLog::open(&base).unwrap();
        assert!(!ikev1_path(&base).exists(), "created only when needed");
        k.isakmp_sa(&s).unwrap();
        k.isakmp_sa(&s).unwrap();
        let v1 = ikev1_path(&base);
        let mode = std::fs::metadata(&v1).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&v1).unwrap().lines().count(), 2);
        for p in [base.clone(), paths(&base).1, v1] {
            std::fs::remove_file(p).unwrap();
        }
    }

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
        std::fs::remove_file(paths(&dir).1).unwrap();
    }

    fn secrets(suite: Suite, key_bits_prf: ike_lite::crypto::PrfId) -> IkeSaSecrets {
        use ike_lite::crypto::{DhGroup, SecretBytes};
        let h = |x: &str| {
            let b = (0..x.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&x[i..i + 2], 16).unwrap())
                .collect();
            SecretBytes::new(b)
        };
        let gcm = suite.integ == IntegId::NONE;
        IkeSaSecrets {
            conn: ike_lite::ConnId(0),
            spi_i: 0x9366_3172_80fa_6b06,
            spi_r: 0x1058_ceb2_8cda_e906,
            algorithms: ike_lite::proposal::IkeChoice {
                suite,
                prf: key_bits_prf,
                dh: DhGroup::MODP_2048,
            },
            sk_ei: h("2f27e8ab838c97ff238c122f8272426963424d01"),
            sk_er: h("bad3f79e2394dce56df7b535619dc1602c19feb5"),
            sk_ai: if gcm {
                h("")
            } else {
                h("367b04378ac4778b360c23ca645f08c775879881")
            },
            sk_ar: if gcm {
                h("")
            } else {
                h("87e1fac150d861ac12e6331c58403af97eb416aa")
            },
        }
    }

    #[test]
    fn ikev2_decryption_table_lines() {
        use ike_lite::crypto::PrfId;
        // SPIs and keys of the strongSwan capture in
        // ike-lite/tests/vectors/strongswan_ikev2_psk.txt; the layout is the
        // one of strongSwan's save-keys plugin, the names Wireshark's.
        let s = secrets(Suite::AES128_GCM16, PrfId::HMAC_SHA2_256);
        assert_eq!(
            ikev2_line(&s).unwrap().as_str(),
            "9366317280fa6b06,1058ceb28cdae906,\
             2f27e8ab838c97ff238c122f8272426963424d01,\
             bad3f79e2394dce56df7b535619dc1602c19feb5,\
             \"AES-GCM-128 with 16 octet ICV [RFC5282]\",,,\"NONE [RFC4306]\""
        );
        assert!(format!("{s:?}").contains("redacted"));
        let s = secrets(Suite::AES256_CBC_HMAC_SHA2_256_128, PrfId::HMAC_SHA2_256);
        let l = ikev2_line(&s).unwrap();
        assert!(
            l.contains(",\"AES-CBC-256 [RFC3602]\",367b04378ac4778b360c23ca645f08c775879881,87e1")
        );
        assert!(
            l.ends_with(",\"HMAC_SHA2_256_128 [RFC4868]\""),
            "{}",
            l.as_str()
        );
        let s = secrets(Suite::AES128_CBC_HMAC_SHA1_96, PrfId::HMAC_SHA1);
        assert!(ikev2_line(&s)
            .unwrap()
            .contains("\"AES-CBC-128 [RFC3602]\""));
        assert!(ikev2_line(&s)
            .unwrap()
            .ends_with("\"HMAC_SHA1_96 [RFC2404]\""));
        let odd = Suite {
            encr: EncrId(3),
            encr_key_bits: 0,
            integ: IntegId::NONE,
        };
        assert!(ikev2_line(&secrets(odd, PrfId::HMAC_SHA1)).is_none());
    }

    #[test]
    fn files_beside_a_path_or_inside_a_directory() {
        let dir = std::env::temp_dir().join(format!("tb-keylog-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(
            paths(&dir),
            (dir.join("esp_sa"), dir.join("ikev2_decryption_table"))
        );
        let f = dir.join("keys");
        assert_eq!(
            paths(&f),
            (f.clone(), dir.join("keys.ikev2_decryption_table"))
        );
        for p in [&dir, &f] {
            let mut k = KeyLog::open(p).unwrap();
            let s = secrets(Suite::AES128_GCM16, ike_lite::crypto::PrfId::HMAC_SHA2_256);
            k.ike_sa(&s).unwrap();
            k.ike_sa(&s).unwrap();
            let (esp, ike) = paths(p);
            for x in [&esp, &ike] {
                let mode = std::fs::metadata(x).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", x.display());
            }
            let text = std::fs::read_to_string(&ike).unwrap();
            assert_eq!(text.lines().count(), 2);
            assert!(text.starts_with("9366317280fa6b06,"));
            assert_eq!(std::fs::read_to_string(&esp).unwrap(), "");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
