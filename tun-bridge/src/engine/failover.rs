//! Active/standby selection for tunnels that carry the same remote subnets
//! (AWS Tunnel1/Tunnel2): which member the routes point at.

use std::fmt;
use std::str::FromStr;

/// When to move traffic back to the primary (first configured) tunnel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Failback {
    /// Stay on the tunnel traffic failed over to.
    Never,
    /// Return to the primary as soon as it is up again.
    #[default]
    Primary,
}

impl FromStr for Failback {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "never" => Ok(Failback::Never),
            "primary" => Ok(Failback::Primary),
            _ => Err(format!("expected never or primary, got {s:?}")),
        }
    }
}

impl fmt::Display for Failback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Failback::Never => "never",
            Failback::Primary => "primary",
        })
    }
}

/// A failover group: member connection indices in configuration order
/// (index 0 is the primary) and the active member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Connection indices; `members[0]` is the primary.
    pub members: Vec<usize>,
    /// Position (in `members`) of the member the routes point at.
    pub active: usize,
}

impl Group {
    /// A group whose routes start on the primary.
    pub fn new(members: Vec<usize>) -> Group {
        Group { members, active: 0 }
    }

    /// The active connection index.
    pub fn active_conn(&self) -> usize {
        self.members[self.active]
    }

    /// Which member should be active given which connections are `up`
    /// (have a usable Child SA). Keeps the current member while it is up
    /// (unless failback returns to the primary); otherwise moves to the
    /// first member that is up; if none is up, stays.
    pub fn choose(&self, up: impl Fn(usize) -> bool, failback: Failback) -> usize {
        if failback == Failback::Primary && up(self.members[0]) {
            return 0;
        }
        if up(self.members[self.active]) {
            return self.active;
        }
        self.members
            .iter()
            .position(|&m| up(m))
            .unwrap_or(self.active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_and_failback() {
        let mut g = Group::new(vec![3, 5]);
        assert_eq!(g.active_conn(), 3);
        // both up: primary
        assert_eq!(g.choose(|_| true, Failback::Primary), 0);
        // primary dead: standby
        g.active = g.choose(|c| c == 5, Failback::Primary);
        assert_eq!(g.active_conn(), 5);
        // nothing up: stay
        assert_eq!(g.choose(|_| false, Failback::Primary), 1);
        // primary back, policy primary: return
        assert_eq!(g.choose(|_| true, Failback::Primary), 0);
        // primary back, policy never: stay
        assert_eq!(g.choose(|_| true, Failback::Never), 1);
        // never: active dead, primary up: move to primary
        assert_eq!(g.choose(|c| c == 3, Failback::Never), 0);
        assert_eq!("never".parse::<Failback>(), Ok(Failback::Never));
        assert!("sometimes".parse::<Failback>().is_err());
    }
}
