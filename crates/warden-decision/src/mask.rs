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
/// In obligation JSON a strategy is written by its bare name, the same in `redact` (`"with":
/// "last4"`) and in `mask_columns` (`"ssn": "last4"`). The name is the whole value: a prefixed
/// spelling such as `mask:last4` is refused, with a message that gives the name to write.
///
/// ```
/// use warden_decision::MaskStrategy;
///
/// let s: MaskStrategy = "last4".parse().unwrap();
/// assert_eq!(s, MaskStrategy::Last4);
/// let e = "mask:last4".parse::<MaskStrategy>().unwrap_err();
/// assert_eq!(e.to_string(), "unknown mask strategy `mask:last4` (write `last4`)");
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
#[error("unknown mask strategy `{0}`{hint}", hint = spelling_hint(.0))]
pub struct UnknownStrategy(pub String);

/// For a name that differs from a strategy's only by a prefix or case, the name to write.
fn spelling_hint(name: &str) -> String {
    let bare = name
        .rsplit(':')
        .next()
        .unwrap_or(name)
        .trim()
        .to_ascii_lowercase();
    match MaskStrategy::ALL.into_iter().find(|s| s.name() == bare) {
        Some(strategy) if strategy.name() != name => format!(" (write `{strategy}`)"),
        _ => String::new(),
    }
}

impl FromStr for MaskStrategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|strategy| strategy.name() == s)
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
    fn parses_every_name_and_refuses_prefixed_spellings() {
        for strategy in MaskStrategy::ALL {
            assert_eq!(strategy.name().parse::<MaskStrategy>(), Ok(strategy));
            let prefixed = format!("mask:{strategy}");
            let error = prefixed.parse::<MaskStrategy>().unwrap_err();
            assert!(
                error
                    .to_string()
                    .ends_with(&format!("(write `{strategy}`)")),
                "{error}"
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

/// Applies [`MaskStrategy`]s to values, the same way for the HTTP PEP (JSON) and the SQL PEP.
///
/// | strategy | on a string | on a number or boolean | on an object or array | on `null` |
/// |---|---|---|---|---|
/// | `remove` | the member or element is dropped | dropped | dropped | dropped |
/// | `null` | `null` | `null` | `null` | `null` |
/// | `redact` | the replacement string (default `[REDACTED]`) | the replacement | the replacement | `null` |
/// | `hash` | HMAC-SHA-256 of the UTF-8 bytes, hex | HMAC of its JSON text | HMAC of its JSON text | `null` |
/// | `last4`, `first4` | keeps the last (first) 4 letters and digits, at most half of them, masks the others with `*` (which counts as a character, so a masked value stays as it is); separators and length stay | the same on its decimal text | the replacement | `null` |
/// | `year` | `"1985"` for a date or timestamp starting `YYYY-`, `YYYY/`, `YYYYT` or `YYYY`; anything else the replacement | the replacement | the replacement | `null` |
///
/// `hash` needs a key ([`Masker::with_hash_key`]); without one it is refused, so a PEP denies
/// instead of falling back to an unkeyed (guessable) hash.
///
/// ```
/// use serde_json::json;
/// use warden_decision::{Masked, MaskStrategy, Masker};
///
/// let masker = Masker::new();
/// let ssn = json!("123-45-6789");
/// assert_eq!(masker.mask(MaskStrategy::Last4, &ssn).unwrap(), Masked::Value(json!("***-**-6789")));
/// assert_eq!(masker.mask(MaskStrategy::First4, &ssn).unwrap(), Masked::Value(json!("123-4*-****")));
/// assert_eq!(masker.mask(MaskStrategy::Year, &json!("1985-12-10")).unwrap(), Masked::Value(json!("1985")));
/// assert!(masker.mask(MaskStrategy::Hash, &ssn).is_err(), "no key, no hash");
///
/// let keyed = Masker::with_hash_key(b"0123456789abcdef0123456789abcdef").unwrap();
/// let a = keyed.mask(MaskStrategy::Hash, &ssn).unwrap();
/// assert_eq!(a, keyed.mask(MaskStrategy::Hash, &ssn).unwrap(), "deterministic");
/// ```
#[derive(Clone)]
pub struct Masker {
    hash_key: Option<std::sync::Arc<[u8]>>,
    replacement: String,
    mask_char: char,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("hash_key", &self.hash_key.as_ref().map(|_| "<set>"))
            .field("replacement", &self.replacement)
            .field("mask_char", &self.mask_char)
            .finish()
    }
}

impl Default for Masker {
    fn default() -> Self {
        Self::new()
    }
}

/// The outcome of masking one value.
#[derive(Debug, Clone, PartialEq)]
pub enum Masked {
    /// Drop the member or element.
    Remove,
    /// Replace the value with this one.
    Value(serde_json::Value),
}

/// Why a value could not be masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MaskError {
    /// `hash` was asked for but no key is configured.
    #[error("the `hash` mask strategy needs a key, and none is configured")]
    NoHashKey,
    /// The hash key is too short.
    #[error("a hash key must have at least 16 bytes, this one has {0}")]
    ShortHashKey(usize),
}

/// The shortest hash key [`Masker::with_hash_key`] accepts.
pub const MIN_HASH_KEY_LEN: usize = 16;

impl Masker {
    /// A masker without a hash key, replacement `[REDACTED]`, mask character `*`.
    pub fn new() -> Self {
        Self {
            hash_key: None,
            replacement: "[REDACTED]".into(),
            mask_char: '*',
        }
    }

    /// A masker whose `hash` is keyed with `key` (at least [`MIN_HASH_KEY_LEN`] bytes).
    pub fn with_hash_key(key: impl AsRef<[u8]>) -> Result<Self, MaskError> {
        let key = key.as_ref();
        if key.len() < MIN_HASH_KEY_LEN {
            return Err(MaskError::ShortHashKey(key.len()));
        }
        Ok(Self {
            hash_key: Some(key.into()),
            ..Self::new()
        })
    }

    /// The string `redact` writes (default `[REDACTED]`).
    #[must_use]
    pub fn replacement(mut self, replacement: impl Into<String>) -> Self {
        self.replacement = replacement.into();
        self
    }

    /// The character `last4` and `first4` mask with (default `*`).
    #[must_use]
    pub fn mask_char(mut self, c: char) -> Self {
        self.mask_char = c;
        self
    }

    /// Whether the masker can apply `strategy` (`hash` needs a key).
    pub fn supports(&self, strategy: MaskStrategy) -> bool {
        strategy != MaskStrategy::Hash || self.hash_key.is_some()
    }

    /// Masks one JSON value.
    pub fn mask(
        &self,
        strategy: MaskStrategy,
        value: &serde_json::Value,
    ) -> Result<Masked, MaskError> {
        use serde_json::Value;
        if strategy == MaskStrategy::Remove {
            return Ok(Masked::Remove);
        }
        if value.is_null() || strategy == MaskStrategy::Null {
            return Ok(Masked::Value(Value::Null));
        }
        let masked = match (strategy, value) {
            (MaskStrategy::Hash, Value::String(s)) => self.hash(s.as_bytes())?,
            (MaskStrategy::Hash, other) => self.hash(other.to_string().as_bytes())?,
            (MaskStrategy::Last4 | MaskStrategy::First4, Value::String(s)) => {
                self.partial(s, strategy == MaskStrategy::Last4)
            }
            (MaskStrategy::Last4 | MaskStrategy::First4, Value::Number(n)) => {
                self.partial(&n.to_string(), strategy == MaskStrategy::Last4)
            }
            (MaskStrategy::Year, Value::String(s)) => {
                year(s).map_or_else(|| self.replacement.clone(), str::to_owned)
            }
            _ => self.replacement.clone(),
        };
        Ok(Masked::Value(Value::String(masked)))
    }

    /// Masks one text value, as a SQL PEP would a column; `None` is SQL `NULL` (for `null` and
    /// `remove`).
    pub fn mask_text(
        &self,
        strategy: MaskStrategy,
        text: &str,
    ) -> Result<Option<String>, MaskError> {
        match self.mask(strategy, &serde_json::Value::String(text.to_owned()))? {
            Masked::Value(serde_json::Value::String(s)) => Ok(Some(s)),
            _ => Ok(None),
        }
    }

    fn hash(&self, bytes: &[u8]) -> Result<String, MaskError> {
        use hmac::{Mac, SimpleHmac};
        let key = self.hash_key.as_ref().ok_or(MaskError::NoHashKey)?;
        let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(key)
            .map_err(|_| MaskError::ShortHashKey(key.len()))?;
        mac.update(bytes);
        let digest = mac.finalize().into_bytes();
        let mut hex = String::with_capacity(64);
        for b in digest {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
        }
        Ok(hex)
    }

    /// Keeps the last (or first) four letters and digits, but never more than half of them.
    ///
    /// The mask character counts as a character of the value, so a value another PEP already
    /// masked the same way (the SQL PEP's `*******6789`) is masked again to itself, not to
    /// fewer visible characters.
    fn partial(&self, s: &str, keep_last: bool) -> String {
        let content = |c: char| c.is_alphanumeric() || c == self.mask_char;
        let total = s.chars().filter(|&c| content(c)).count();
        let keep = (total / 2).min(4);
        let mut seen = 0;
        s.chars()
            .map(|c| {
                if !content(c) {
                    return c;
                }
                seen += 1;
                let visible = if keep_last {
                    seen > total - keep
                } else {
                    seen <= keep
                };
                if visible { c } else { self.mask_char }
            })
            .collect()
    }
}

/// The year of a date or timestamp (`1985`, `1985-12-10`, `1985/12/10`, `1985-12-10T08:00:00Z`).
fn year(s: &str) -> Option<&str> {
    let digits = s.get(..4)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match s.as_bytes().get(4) {
        None | Some(b'-' | b'/' | b'T') => Some(digits),
        Some(_) => None,
    }
}

#[cfg(test)]
mod masker_tests {
    use super::*;
    use serde_json::{Value, json};

    fn value(m: &Masker, s: MaskStrategy, v: Value) -> Value {
        match m.mask(s, &v).unwrap() {
            Masked::Value(v) => v,
            Masked::Remove => Value::from("<removed>"),
        }
    }

    #[test]
    fn masks_strings_numbers_containers_and_nulls() {
        use MaskStrategy::*;
        let m = Masker::new();
        assert_eq!(
            value(&m, Last4, json!("4111 1111 1111 1234")),
            json!("**** **** **** 1234")
        );
        assert_eq!(
            value(&m, First4, json!("alice@example.com")),
            json!("alic*@*******.***")
        );
        assert_eq!(value(&m, Last4, json!(123456789)), json!("*****6789"));
        assert_eq!(
            value(&m, Last4, json!("1234")),
            json!("**34"),
            "never more than half"
        );
        assert_eq!(value(&m, Last4, json!("7")), json!("*"));
        // Masking a masked value changes nothing: PEPs that stack masks show what either shows.
        assert_eq!(value(&m, Last4, json!("***-**-6789")), json!("***-**-6789"));
        assert_eq!(value(&m, Last4, json!("*******6789")), json!("*******6789"));
        assert_eq!(
            value(&m, First4, json!("1234*******")),
            json!("1234*******")
        );
        assert_eq!(value(&m, Last4, json!({"a": 1})), json!("[REDACTED]"));
        assert_eq!(value(&m, Last4, json!(true)), json!("[REDACTED]"));
        assert_eq!(value(&m, Redact, json!([1, 2])), json!("[REDACTED]"));
        assert_eq!(value(&m, Null, json!("x")), Value::Null);
        assert_eq!(value(&m, Redact, Value::Null), Value::Null);
        assert_eq!(value(&m, Remove, json!("x")), json!("<removed>"));
        assert_eq!(
            value(&m, Year, json!("1985-12-10T08:00:00Z")),
            json!("1985")
        );
        assert_eq!(value(&m, Year, json!("1985/12/10")), json!("1985"));
        assert_eq!(value(&m, Year, json!("19851210")), json!("[REDACTED]"));
        assert_eq!(value(&m, Year, json!("next tuesday")), json!("[REDACTED]"));
        assert_eq!(value(&m, Year, json!(1985)), json!("[REDACTED]"));
    }

    #[test]
    fn partial_masks_count_unicode_characters_not_bytes() {
        let m = Masker::new().mask_char('#');
        assert_eq!(
            value(&m, MaskStrategy::Last4, json!("Zoë Ångström")),
            json!("### ####tröm")
        );
        assert_eq!(
            value(&m, MaskStrategy::First4, json!("日本語のテキスト")),
            json!("日本語の####")
        );
    }

    #[test]
    fn hash_is_keyed_deterministic_and_never_the_bare_hash() {
        let m = Masker::with_hash_key("0123456789abcdef").unwrap();
        let other = Masker::with_hash_key("fedcba9876543210").unwrap();
        let a = value(&m, MaskStrategy::Hash, json!("Ada Lovelace"));
        assert_eq!(a, value(&m, MaskStrategy::Hash, json!("Ada Lovelace")));
        assert_ne!(a, value(&other, MaskStrategy::Hash, json!("Ada Lovelace")));
        assert_ne!(a, value(&m, MaskStrategy::Hash, json!("Ada Lovelace ")));
        let hex = a.as_str().unwrap();
        assert_eq!(hex.len(), 64);
        // Not SHA-256("Ada Lovelace").
        assert_ne!(
            hex,
            "76740216171591903cdbd18fbc770df447c5b1671005ca0020922a465bba0172"
        );
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let jefe = Masker {
            hash_key: Some(b"Jefe".as_slice().into()),
            ..Masker::new()
        };
        assert_eq!(
            jefe.hash(b"what do ya want for nothing?").unwrap(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            Masker::new().mask(MaskStrategy::Hash, &json!("x")),
            Err(MaskError::NoHashKey)
        );
        assert!(matches!(
            Masker::with_hash_key("short"),
            Err(MaskError::ShortHashKey(5))
        ));
    }

    #[test]
    fn mask_text_is_what_a_sql_pep_applies() {
        let m = Masker::new();
        assert_eq!(
            m.mask_text(MaskStrategy::Last4, "123-45-6789")
                .unwrap()
                .as_deref(),
            Some("***-**-6789")
        );
        assert_eq!(m.mask_text(MaskStrategy::Null, "x").unwrap(), None);
        assert_eq!(m.mask_text(MaskStrategy::Remove, "x").unwrap(), None);
    }
}
