//! Mask strategies: the closed set of ways a PEP hides a value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a PEP hides a value it must not disclose.
///
/// The set is closed: a policy naming any other strategy makes its obligation malformed, and a
/// malformed obligation makes the decision a deny. The HTTP PEP (JSON redaction) and the SQL PEP
/// (column masks) apply the same strategies.
///
/// In obligation JSON a strategy is written by name, optionally prefixed with `mask:`
/// (`"last4"` and `"mask:last4"` are the same).
///
/// ```
/// use warden_core::MaskStrategy;
///
/// let s: MaskStrategy = "mask:last4".parse().unwrap();
/// assert_eq!(s, MaskStrategy::Last4);
/// assert!("rot13".parse::<MaskStrategy>().is_err());
/// assert_eq!(MaskStrategy::Null.stricter(MaskStrategy::Remove), MaskStrategy::Remove);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaskStrategy {
    /// Drop the member or array element (JSON only; the SQL PEP treats it as `null`).
    Remove,
    /// Replace the value with `null`.
    Null,
    /// Replace the value with a fixed replacement string.
    Redact,
    /// Replace the value with a keyed, deterministic HMAC-SHA-256 in hex.
    Hash,
    /// Keep the last four characters, mask the rest, keep length and separators.
    Last4,
    /// Keep the first four characters, mask the rest, keep length and separators.
    First4,
    /// Reduce a date or timestamp to its year.
    Year,
}

impl MaskStrategy {
    /// Every strategy, strictest first.
    pub const ALL: [MaskStrategy; 7] = [
        Self::Remove,
        Self::Null,
        Self::Redact,
        Self::Hash,
        Self::Last4,
        Self::First4,
        Self::Year,
    ];

    /// The strategy's name in obligation JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Remove => "remove",
            Self::Null => "null",
            Self::Redact => "redact",
            Self::Hash => "hash",
            Self::Last4 => "last4",
            Self::First4 => "first4",
            Self::Year => "year",
        }
    }

    /// How much the strategy hides: higher hides more.
    ///
    /// `remove` > `null` > `redact` > `hash` > `last4` = `first4` = `year`.
    pub fn strictness(self) -> u8 {
        match self {
            Self::Remove => 4,
            Self::Null => 3,
            Self::Redact => 2,
            Self::Hash => 1,
            Self::Last4 | Self::First4 | Self::Year => 0,
        }
    }

    /// The strategy to apply when two obligations mask the same value.
    ///
    /// The stricter one wins. Two different partial strategies of the same strictness (`last4`
    /// and `first4`, say) would together disclose more than either, so they resolve to
    /// [`MaskStrategy::Redact`].
    #[must_use]
    pub fn stricter(self, other: Self) -> Self {
        if self == other {
            return self;
        }
        match self.strictness().cmp(&other.strictness()) {
            std::cmp::Ordering::Greater => self,
            std::cmp::Ordering::Less => other,
            std::cmp::Ordering::Equal => Self::Redact,
        }
    }
}

impl fmt::Display for MaskStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a mask strategy name that is not in the closed set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mask strategy `{0}`")]
pub struct UnknownStrategy(pub String);

impl FromStr for MaskStrategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.strip_prefix("mask:").unwrap_or(s);
        Self::ALL
            .into_iter()
            .find(|strategy| strategy.name() == name)
            .ok_or_else(|| UnknownStrategy(s.to_owned()))
    }
}

impl Serialize for MaskStrategy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for MaskStrategy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_name_with_and_without_prefix() {
        for strategy in MaskStrategy::ALL {
            assert_eq!(strategy.name().parse::<MaskStrategy>(), Ok(strategy));
            assert_eq!(
                format!("mask:{strategy}").parse::<MaskStrategy>(),
                Ok(strategy)
            );
        }
    }

    #[test]
    fn rejects_unknown_and_differently_cased_names() {
        for name in ["", "LAST4", "mask:", "mask:rot13", "hash ", "sha256"] {
            assert!(name.parse::<MaskStrategy>().is_err(), "{name}");
        }
    }

    #[test]
    fn stricter_follows_the_documented_order() {
        use MaskStrategy::*;
        assert_eq!(Hash.stricter(Remove), Remove);
        assert_eq!(Null.stricter(Redact), Null);
        assert_eq!(Last4.stricter(Hash), Hash);
        assert_eq!(Year.stricter(Year), Year);
        assert_eq!(Last4.stricter(First4), Redact);
        for a in MaskStrategy::ALL {
            for b in MaskStrategy::ALL {
                assert_eq!(a.stricter(b), b.stricter(a));
                assert!(a.stricter(b).strictness() >= a.strictness().max(b.strictness()));
            }
        }
    }
}
