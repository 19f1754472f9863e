//! Secret byte strings: keys, key material and other secrets that must not
//! outlive their use or show up in logs.
//!
//! [`SecretBytes`] is the one secret type of the workspace: the ESP layer
//! keeps its keys in it ([`SaParams`](crate::sa::SaParams)) and the IKE
//! layer its SKEYSEED, SK_* and KEYMAT pieces.

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A secret byte string: zeroized on drop, redacted in `Debug`, compared in
/// constant time (for equal lengths; the length itself is not secret).
#[derive(Clone, Default)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps `bytes` (taking ownership, so no copy is left behind).
    pub fn new(bytes: Vec<u8>) -> SecretBytes {
        SecretBytes(Zeroizing::new(bytes))
    }

    /// Copies `bytes`.
    pub fn from_slice(bytes: &[u8]) -> SecretBytes {
        SecretBytes::new(bytes.to_vec())
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty secret (e.g. the integrity key of AES-GCM).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl core::ops::Deref for SecretBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for SecretBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &SecretBytes) -> bool {
        self.0.len() == other.0.len() && bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for SecretBytes {}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_and_compared_by_content() {
        let a = SecretBytes::new(vec![0x5a; 16]);
        let shown = format!("{a:?}");
        assert!(shown.contains("16 bytes redacted"), "{shown}");
        assert!(!shown.contains("5a") && !shown.contains("90"), "{shown}");
        assert_eq!(a, SecretBytes::from_slice(&[0x5a; 16]));
        assert_ne!(a, SecretBytes::from_slice(&[0x5a; 15]));
        assert_ne!(a, SecretBytes::from_slice(&[0x5b; 16]));
        assert_eq!(&a[..2], &[0x5a, 0x5a]);
        assert!(SecretBytes::default().is_empty());
    }
}
