//! IKEv1 message encryption (RFC 2409 §5.3, Appendix B): the body after
//! the ISAKMP header is AES-CBC encrypted with `Ka`, zero-padded to the
//! block size, and the IV chains: the last ciphertext block of a message
//! is the IV of the next one in the same exchange. The first IVs come from
//! [`super::keys::phase1_iv`] and [`super::keys::phase2_iv`].
//!
//! IKEv1 has no integrity check on the ciphertext; a tampered message is
//! caught by the HASH payloads (or by the payload chain not parsing).

use super::wire::{emit_chain, Header, Kind, WireError, FLAG_ENCRYPTED, HEADER_LEN};
use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use core::fmt;
use ipsec_core::secret::SecretBytes;

/// The AES block size, and so the IV length.
pub const BLOCK: usize = 16;

/// An IV of the chain.
pub type Iv = [u8; BLOCK];

/// The phase-1 encryption key `Ka` (AES-128, -192 or -256).
#[derive(Clone, PartialEq, Eq)]
pub struct MessageCipher {
    key: SecretBytes,
}

impl fmt::Debug for MessageCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageCipher(AES-{}, <redacted>)", self.key.len() * 8)
    }
}

/// The key length is not an AES key length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadKeyLength(pub usize);

impl fmt::Display for BadKeyLength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes is not an AES key length", self.0)
    }
}

impl std::error::Error for BadKeyLength {}

macro_rules! with_aes {
    ($key:expr, $aes:ident => $body:expr) => {
        match $key.len() {
            16 => {
                type $aes = aes::Aes128;
                $body
            }
            24 => {
                type $aes = aes::Aes192;
                $body
            }
            _ => {
                type $aes = aes::Aes256;
                $body
            }
        }
    };
}

impl MessageCipher {
    /// A cipher keyed with `Ka`.
    pub fn new(key: SecretBytes) -> Result<MessageCipher, BadKeyLength> {
        match key.len() {
            16 | 24 | 32 => Ok(MessageCipher { key }),
            n => Err(BadKeyLength(n)),
        }
    }

    fn encrypt(&self, iv: &Iv, buf: &mut [u8]) {
        let len = buf.len();
        with_aes!(self.key, A => {
            // Key and IV lengths were checked; `buf` is block aligned.
            if let Ok(c) = cbc::Encryptor::<A>::new_from_slices(&self.key, iv) {
                let _ = c.encrypt_padded_mut::<NoPadding>(buf, len);
            }
        })
    }

    fn decrypt(&self, iv: &Iv, buf: &mut [u8]) {
        with_aes!(self.key, A => {
            if let Ok(c) = cbc::Decryptor::<A>::new_from_slices(&self.key, iv) {
                let _ = c.decrypt_padded_mut::<NoPadding>(buf);
            }
        })
    }

    /// Builds an encrypted message: `header` (its next payload, flags and
    /// length are filled in) followed by the encrypted, zero-padded chain.
    /// Returns the datagram and the IV for the next message (its last
    /// ciphertext block).
    pub fn seal(&self, mut header: Header, payloads: &[(Kind, Vec<u8>)], iv: &Iv) -> (Vec<u8>, Iv) {
        let (first, mut body) = emit_chain(payloads);
        let pad = (BLOCK - body.len() % BLOCK) % BLOCK;
        body.resize(body.len() + pad, 0);
        if body.is_empty() {
            body.resize(BLOCK, 0);
        }
        self.encrypt(iv, &mut body);
        header.next = first;
        header.flags |= FLAG_ENCRYPTED;
        header.length = (HEADER_LEN + body.len()) as u32;
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        header.emit(&mut out);
        out.extend_from_slice(&body);
        (out, last_block(&body))
    }

    /// Decrypts the body of `msg` (whose header must carry the encryption
    /// flag). Returns the header, the plaintext body (with its padding) and
    /// the IV for the next message.
    pub fn open(&self, msg: &[u8], iv: &Iv) -> Result<(Header, Vec<u8>, Iv), WireError> {
        let header = Header::parse(msg)?;
        if !header.is_encrypted() {
            return Err(WireError::EncryptionFlag);
        }
        let mut body = msg[HEADER_LEN..].to_vec();
        if body.is_empty() || body.len() % BLOCK != 0 {
            return Err(WireError::BadCiphertextLength);
        }
        let next = last_block(&body);
        self.decrypt(iv, &mut body);
        Ok((header, body, next))
    }
}

/// The last block of a block-aligned, non-empty buffer (zeros otherwise).
pub fn last_block(body: &[u8]) -> Iv {
    let mut iv = [0u8; BLOCK];
    if body.len() >= BLOCK {
        iv.copy_from_slice(&body[body.len() - BLOCK..]);
    }
    iv
}

#[cfg(test)]
mod tests {
    use super::super::wire::{Exchange, Message};
    use super::*;

    #[test]
    fn seal_open_chain() {
        for klen in [16, 24, 32] {
            let c = MessageCipher::new(SecretBytes::new(vec![7; klen])).unwrap();
            let h = Header {
                cookie_i: 1,
                cookie_r: 2,
                next: Kind::NONE,
                exchange: Exchange::QUICK,
                flags: 0,
                message_id: 9,
                length: 0,
            };
            let iv = [3u8; BLOCK];
            let payloads = vec![(Kind::HASH, vec![1; 20]), (Kind::NONCE, vec![2; 17])];
            let (msg, next) = c.seal(h, &payloads, &iv);
            assert_eq!((msg.len() - HEADER_LEN) % BLOCK, 0);
            assert_eq!(&msg[msg.len() - BLOCK..], &next);
            let (hdr, body, next2) = c.open(&msg, &iv).unwrap();
            assert_eq!(next, next2);
            let m = Message::parse_body(hdr, &body).unwrap();
            assert_eq!(m.payloads.len(), 2);
            assert_eq!(m.first(Kind::NONCE).unwrap().body, &[2; 17]);
            // A wrong IV only garbles the first block: the HASH catches it.
            let (_, body, _) = c.open(&msg, &[0; BLOCK]).unwrap();
            assert_ne!(&body[4..16], &[1; 12]);
            let mut cut = msg.clone();
            cut.truncate(msg.len() - 1);
            let l = (cut.len() as u32).to_be_bytes();
            cut[24..28].copy_from_slice(&l);
            assert_eq!(c.open(&cut, &iv), Err(WireError::BadCiphertextLength));
        }
        assert_eq!(
            MessageCipher::new(SecretBytes::new(vec![0; 20])),
            Err(BadKeyLength(20))
        );
    }
}
