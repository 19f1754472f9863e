//! ENCR_NULL (RFC 2410) with an HMAC integrity transform: the payload is
//! authenticated but left in clear. For tests and interop debugging only.

use core::fmt;

use super::integ::Integ;
use super::{check_lengths, Cipher, CryptoError, Suite};

/// One keyed direction of NULL + HMAC.
pub(crate) struct NullHmac {
    suite: Suite,
    integ: Integ,
}

impl fmt::Debug for NullHmac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NullHmac {{ suite: {}, integ: <redacted> }}",
            self.suite.name()
        )
    }
}

impl NullHmac {
    pub(crate) fn new(suite: Suite, integ_key: &[u8]) -> Result<Self, CryptoError> {
        Ok(NullHmac {
            suite,
            integ: Integ::new(suite.integ, integ_key)?,
        })
    }
}

impl Cipher for NullHmac {
    fn suite(&self) -> Suite {
        self.suite
    }
    fn iv_len(&self) -> usize {
        0
    }
    fn icv_len(&self) -> usize {
        self.integ.icv_len()
    }
    fn block_len(&self) -> usize {
        1
    }

    fn seal(
        &self,
        header: &[u8],
        esn_hi: Option<u32>,
        _iv_seed: u64,
        iv: &mut [u8],
        payload: &mut [u8],
        icv: &mut [u8],
    ) -> Result<(), CryptoError> {
        check_lengths(self, header, esn_hi, iv, payload, icv)?;
        self.integ.compute(header, &[], payload, esn_hi, icv);
        Ok(())
    }

    fn open(
        &self,
        header: &[u8],
        esn_hi: Option<u32>,
        iv: &[u8],
        payload: &mut [u8],
        icv: &[u8],
    ) -> Result<(), CryptoError> {
        check_lengths(self, header, esn_hi, iv, payload, icv)?;
        self.integ.verify(header, &[], payload, esn_hi, icv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let c = NullHmac::new(Suite::NULL_HMAC_SHA1_96, &[0x42; 20]).unwrap();
        assert_eq!(
            format!("{c:?}"),
            "NullHmac { suite: null-sha1, integ: <redacted> }"
        );
    }
}
