//! Reassembly of IKE fragments (RFC 7383 §2.6).
//!
//! Each SKF payload is authenticated and decrypted on its own; the caller
//! passes the decrypted inner bytes of every fragment here and gets the whole
//! inner payload chain back once all fragments of the message are present.

use super::PayloadType;
use core::fmt;

/// Why a fragment was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FragError {
    /// More fragments than [`Reassembler::MAX_FRAGMENTS`].
    TooManyFragments,
    /// The reassembled message would exceed [`Reassembler::MAX_BYTES`].
    TooLarge,
    /// Fragment number is 0 or above the total.
    BadNumber,
    /// Fragment 1 names no first payload, or a later fragment does.
    BadFirstPayload,
    /// The fragment has a lower total than the set being collected (a stale
    /// retransmission, RFC 7383 §2.6.2) or belongs to an older message.
    Stale,
}

impl fmt::Display for FragError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FragError::TooManyFragments => "too many fragments",
            FragError::TooLarge => "reassembled message too large",
            FragError::BadNumber => "bad fragment number",
            FragError::BadFirstPayload => "bad next-payload in fragment",
            FragError::Stale => "stale fragment",
        })
    }
}

impl std::error::Error for FragError {}

/// Collects the fragments of one message at a time.
#[derive(Debug, Default)]
pub struct Reassembler {
    message_id: Option<u32>,
    total: u16,
    first: PayloadType,
    parts: Vec<Option<Vec<u8>>>,
    bytes: usize,
}

impl Reassembler {
    /// Largest accepted number of fragments.
    pub const MAX_FRAGMENTS: u16 = 64;
    /// Largest accepted reassembled size in bytes.
    pub const MAX_BYTES: usize = 64 * 1024;

    /// An empty reassembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets any partial message.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Adds the decrypted content of fragment `number` of `total` of message
    /// `message_id`. Returns the first payload type and the whole inner chain
    /// once complete. Duplicates are ignored.
    pub fn add(
        &mut self,
        message_id: u32,
        number: u16,
        total: u16,
        first: PayloadType,
        plaintext: &[u8],
    ) -> Result<Option<(PayloadType, Vec<u8>)>, FragError> {
        if total > Self::MAX_FRAGMENTS {
            return Err(FragError::TooManyFragments);
        }
        if number == 0 || number > total {
            return Err(FragError::BadNumber);
        }
        if (number == 1) == (first == PayloadType::NONE) {
            return Err(FragError::BadFirstPayload);
        }
        match self.message_id {
            Some(id) if id == message_id => {
                if total < self.total {
                    return Err(FragError::Stale);
                }
                if total > self.total {
                    self.start(message_id, total);
                }
            }
            Some(id) if message_id < id => return Err(FragError::Stale),
            _ => self.start(message_id, total),
        }
        let slot = &mut self.parts[usize::from(number - 1)];
        if slot.is_some() {
            return Ok(None);
        }
        if self.bytes + plaintext.len() > Self::MAX_BYTES {
            return Err(FragError::TooLarge);
        }
        self.bytes += plaintext.len();
        *slot = Some(plaintext.to_vec());
        if number == 1 {
            self.first = first;
        }
        if self.parts.iter().all(Option::is_some) {
            let mut all = Vec::with_capacity(self.bytes);
            for p in self.parts.drain(..).flatten() {
                all.extend_from_slice(&p);
            }
            let first = self.first;
            self.clear();
            // Remember that this message is done so late duplicates are stale.
            self.message_id = Some(message_id.wrapping_add(1));
            return Ok(Some((first, all)));
        }
        Ok(None)
    }

    fn start(&mut self, message_id: u32, total: u16) {
        self.message_id = Some(message_id);
        self.total = total;
        self.first = PayloadType::NONE;
        self.parts = vec![None; usize::from(total)];
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassembles_out_of_order_with_duplicates() {
        let mut r = Reassembler::new();
        assert_eq!(r.add(5, 3, 3, PayloadType::NONE, b"ccc"), Ok(None));
        assert_eq!(r.add(5, 3, 3, PayloadType::NONE, b"ccc"), Ok(None));
        assert_eq!(r.add(5, 1, 3, PayloadType::IDI, b"a"), Ok(None));
        let done = r.add(5, 2, 3, PayloadType::NONE, b"bb").unwrap();
        assert_eq!(done, Some((PayloadType::IDI, b"abbccc".to_vec())));
        assert_eq!(
            r.add(5, 2, 3, PayloadType::NONE, b"bb"),
            Err(FragError::Stale)
        );
    }

    #[test]
    fn larger_total_restarts_smaller_is_stale() {
        let mut r = Reassembler::new();
        assert_eq!(r.add(1, 1, 2, PayloadType::SA, b"x"), Ok(None));
        assert_eq!(r.add(1, 1, 3, PayloadType::SA, b"a"), Ok(None));
        assert_eq!(
            r.add(1, 2, 2, PayloadType::NONE, b"y"),
            Err(FragError::Stale)
        );
        assert_eq!(r.add(1, 2, 3, PayloadType::NONE, b"b"), Ok(None));
        assert_eq!(
            r.add(1, 3, 3, PayloadType::NONE, b"c").unwrap().unwrap().1,
            b"abc"
        );
    }

    #[test]
    fn rejects_bad_fragments() {
        let mut r = Reassembler::new();
        assert_eq!(
            r.add(1, 0, 2, PayloadType::SA, b""),
            Err(FragError::BadNumber)
        );
        assert_eq!(
            r.add(1, 3, 2, PayloadType::NONE, b""),
            Err(FragError::BadNumber)
        );
        assert_eq!(
            r.add(1, 1, 2, PayloadType::NONE, b""),
            Err(FragError::BadFirstPayload)
        );
        assert_eq!(
            r.add(1, 2, 2, PayloadType::SA, b""),
            Err(FragError::BadFirstPayload)
        );
        assert_eq!(
            r.add(1, 1, 65, PayloadType::SA, b""),
            Err(FragError::TooManyFragments)
        );
        let big = vec![0u8; 40 * 1024];
        assert_eq!(r.add(1, 1, 2, PayloadType::SA, &big), Ok(None));
        assert_eq!(
            r.add(1, 2, 2, PayloadType::NONE, &big),
            Err(FragError::TooLarge)
        );
    }
}
