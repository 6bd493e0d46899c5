//! Which rule decided a packet, as the dataplane reports it: every rule that ends
//! policy evaluation (an Allow or Deny, the drop at the end of a tier, the drop when no
//! profile allowed) logs the packets it decides under a short prefix naming an
//! [`Attribution`]. Flow logs read the prefix back from the kernel, so the deciding rule
//! is the one the kernel ran, never re-derived afterwards.

use serde::{Deserialize, Serialize};

use crate::eval::{Decision, Verdict};
use crate::model::{Action, Direction};

/// The first characters of every flow-log prefix (the rest is a hash).
pub const LOG_PREFIX_TAG: &str = "cf1:";

/// One deciding rule: the direction of policy it belongs to and what it decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    /// Ingress (at the destination endpoint) or egress (at the source endpoint).
    #[serde(rename = "direction")]
    pub direction: Direction,
    /// The rule, in the words `calicoctl policy trace` uses.
    #[serde(rename = "decision")]
    pub decision: Decision,
}

impl Attribution {
    /// The verdict this rule gives.
    pub fn verdict(&self) -> Verdict {
        match &self.decision {
            Decision::PolicyRule { action, .. } | Decision::ProfileRule { action, .. } => {
                match action {
                    Action::Allow => Verdict::Allow,
                    // Only Allow and Deny rules are attributed.
                    Action::Deny | Action::Pass | Action::Log => Verdict::Deny,
                }
            }
            Decision::EndOfTier { .. } | Decision::NoProfileMatched | Decision::NoProfile => {
                Verdict::Deny
            }
        }
    }

    /// The nftables log prefix of this rule: [`LOG_PREFIX_TAG`] and a hash of the
    /// attribution, short enough for the kernel's 127-byte limit whatever the names.
    pub fn log_prefix(&self) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        // The agent that renders the prefixes also reads them back, so its own
        // formatting of the attribution is canonical enough.
        let canonical = format!("{self:?}");
        let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(canonical));
        format!("{LOG_PREFIX_TAG}{}", &hash[..22])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::RuleSource;

    fn rule(name: &str, rule: usize, action: Action) -> Attribution {
        Attribution {
            direction: Direction::Ingress,
            decision: Decision::PolicyRule {
                source: RuleSource::Policy {
                    tier: "default".into(),
                    namespace: None,
                    name: name.into(),
                },
                rule,
                action,
            },
        }
    }

    #[test]
    fn prefixes_are_short_stable_and_distinct() {
        let long = "p".repeat(253);
        let a = rule(&long, 1, Action::Deny);
        assert_eq!(a.log_prefix(), a.clone().log_prefix());
        assert!(a.log_prefix().len() < 32, "{}", a.log_prefix());
        assert!(a.log_prefix().starts_with(LOG_PREFIX_TAG));
        assert_ne!(a.log_prefix(), rule(&long, 0, Action::Deny).log_prefix());
        let egress = Attribution {
            direction: Direction::Egress,
            ..a.clone()
        };
        assert_ne!(a.log_prefix(), egress.log_prefix());
    }

    #[test]
    fn verdicts() {
        assert_eq!(rule("a", 0, Action::Allow).verdict(), Verdict::Allow);
        assert_eq!(rule("a", 0, Action::Deny).verdict(), Verdict::Deny);
        let end = Attribution {
            direction: Direction::Egress,
            decision: Decision::EndOfTier {
                tier: "default".into(),
            },
        };
        assert_eq!(end.verdict(), Verdict::Deny);
    }
}
