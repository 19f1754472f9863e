//! `ike=`, `esp=` and `phase2alg=`: proposal strings parsed once, by
//! ike-lite's parser, into the typed [`IkeProposal`] / [`EspProposal`]
//! lists the IKE layer offers and accepts. `pfs=` is applied here, so the
//! ESP list is exactly what a Child SA negotiation uses.

use ike_lite::proposal::{
    parse_esp_proposals, parse_ike_proposals, EspProposal, IkeProposal, ProposalError,
};

/// A parsed proposal list and the text it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposals<P> {
    /// The value as written; `None` when ike-lite's defaults apply.
    pub text: Option<String>,
    /// The proposals in preference order; never empty.
    pub list: Vec<P>,
}

/// The IKE SA proposals of a connection (`ike=`).
pub type IkeProposals = Proposals<IkeProposal>;

/// The Child SA proposals of a connection (`esp=` / `phase2alg=`).
pub type EspProposals = Proposals<EspProposal>;

impl IkeProposals {
    /// ike-lite's default IKE proposals.
    pub fn defaults() -> Self {
        Self {
            text: None,
            list: IkeProposal::defaults(),
        }
    }

    /// Parses an `ike=` value.
    pub fn parse(text: &str) -> Result<Self, ProposalError> {
        Ok(Self {
            text: Some(text.to_string()),
            list: parse_ike_proposals(text)?,
        })
    }

    /// The DH groups of the preferred proposal (the initial key exchange
    /// uses the first of them).
    pub fn preferred_dh(&self) -> &[ike_lite::crypto::DhGroup] {
        self.list.first().map_or(&[], |p| p.dh.as_slice())
    }
}

impl EspProposals {
    /// ike-lite's default ESP proposals (no DH group: see [`Self::with_pfs`]).
    pub fn defaults() -> Self {
        Self {
            text: None,
            list: EspProposal::defaults(),
        }
    }

    /// Parses an `esp=` / `phase2alg=` value as written.
    pub fn parse(text: &str) -> Result<Self, ProposalError> {
        Ok(Self {
            text: Some(text.to_string()),
            list: parse_esp_proposals(text)?,
        })
    }

    /// True when some proposal names a DH group (PFS for Child SA rekeys).
    pub fn has_dh(&self) -> bool {
        self.list.iter().any(|p| !p.dh.is_empty())
    }

    /// Applies `pfs=`: with `pfs=yes` and no DH group in the list, the
    /// Child SAs use the groups of the preferred IKE proposal (Libreswan);
    /// `pfs=no` drops every group.
    pub fn with_pfs(mut self, ike: &IkeProposals, pfs: bool) -> Self {
        if pfs {
            if !self.has_dh() {
                for p in &mut self.list {
                    p.dh = ike.preferred_dh().to_vec();
                }
            }
        } else {
            for p in &mut self.list {
                p.dh.clear();
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ike_lite::crypto::DhGroup;

    #[test]
    fn ike_text_is_kept_and_parsed() {
        let p = IkeProposals::parse("aes128-sha1;modp1024").unwrap();
        assert_eq!(p.text.as_deref(), Some("aes128-sha1;modp1024"));
        assert_eq!(p.list.len(), 1);
        assert_eq!(p.preferred_dh(), [DhGroup(2)]);
        assert!(IkeProposals::parse("aes999-sha7;modp77").is_err());
        assert!(IkeProposals::parse("").is_err());
        assert!(IkeProposals::defaults().text.is_none());
        assert!(!IkeProposals::defaults().list.is_empty());
    }

    #[test]
    fn pfs_takes_the_ike_groups_or_drops_them() {
        let ike = IkeProposals::parse("aes256-sha2_256-modp2048").unwrap();
        let gcm = EspProposals::parse("aes128gcm16").unwrap();
        assert!(!gcm.has_dh());
        assert_eq!(gcm.with_pfs(&ike, true).list[0].dh, [DhGroup(14)]);
        let own = EspProposals::parse("aes128-sha1-ecp256").unwrap();
        assert_eq!(
            own.clone().with_pfs(&ike, true).list[0].dh,
            [DhGroup(19)],
            "own group kept"
        );
        assert!(!own.with_pfs(&ike, false).has_dh());
        assert!(EspProposals::defaults().with_pfs(&ike, true).has_dh());
        assert!(!EspProposals::defaults().with_pfs(&ike, false).has_dh());
        assert!(EspProposals::parse("foo-bar").is_err());
        assert!(EspProposals::parse("aes128-sha1-prfsha256").is_err());
    }
}
