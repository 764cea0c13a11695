//! Numbers exactly as the client wrote them, or refused.
//!
//! JSON numbers become 64-bit integers or doubles when parsed. Integers in the 64-bit range
//! stay exact; a fraction or exponent with more significant digits than a double keeps
//! (`0.30000000000000001`), or an integer beyond 64 bits, would silently become a *different*
//! number — one a policy may then compare equal to another client's value. [`check`] looks at
//! the JSON text before it is parsed and refuses such numbers: any two numbers it accepts that
//! differ as decimals also differ once parsed.
//!
//! ```
//! use warden_decision::numbers;
//!
//! assert!(numbers::check(br#"{"clinics": ["c1", 42, 0.25, -7e3, 18446744073709551615]}"#).is_ok());
//! let e = numbers::check(br#"{"clinics": [100000000000000000001]}"#).unwrap_err();
//! assert!(e.to_string().contains("100000000000000000001"));
//! assert!(numbers::check(b"[0.30000000000000001]").is_err());
//! // Digits inside strings are text, not numbers.
//! assert!(numbers::check(br#"{"id": "100000000000000000001"}"#).is_ok());
//! ```

use std::fmt;

/// The most significant digits a decimal may have to round-trip through a double unchanged.
pub const MAX_DIGITS: usize = 15;

/// A number in a JSON text that would not keep its value once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InexactNumber(String);

impl fmt::Display for InexactNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.0.chars().take(40).collect();
        write!(
            f,
            "the number {shown} cannot be represented exactly (at most {MAX_DIGITS} significant \
             digits, or an integer within 64 bits): send it as a string"
        )
    }
}

impl std::error::Error for InexactNumber {}

/// Checks every number of the JSON `text` (which need not be valid JSON: anything that is not
/// a number outside a string is skipped, and the parser reports it).
///
/// # Errors
///
/// The first number that would be rounded into another value when parsed.
pub fn check(text: &[u8]) -> Result<(), InexactNumber> {
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        match b {
            b'"' => i = skip_string(text, i + 1),
            b'-' | b'0'..=b'9' => {
                let end = number_end(text, i);
                let token = text.get(i..end).unwrap_or_default();
                if !exact(token) {
                    return Err(InexactNumber(String::from_utf8_lossy(token).into_owned()));
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The index after the string whose content starts at `i`.
fn skip_string(text: &[u8], mut i: usize) -> usize {
    while let Some(&b) = text.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

fn number_end(text: &[u8], mut i: usize) -> usize {
    while let Some(&b) = text.get(i) {
        if b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E') {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// Whether the number `token` keeps its value once parsed.
fn exact(token: &[u8]) -> bool {
    let is_integer = !token.iter().any(|b| matches!(b, b'.' | b'e' | b'E'));
    if is_integer {
        let text = std::str::from_utf8(token).unwrap_or_default();
        return text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok() || text == "-";
    }
    let mantissa = token
        .iter()
        .position(|b| matches!(b, b'e' | b'E'))
        .map_or(token, |e| token.get(..e).unwrap_or_default());
    let digits: Vec<u8> = mantissa
        .iter()
        .copied()
        .filter(u8::is_ascii_digit)
        .collect();
    let significant = digits
        .iter()
        .position(|&d| d != b'0')
        .map_or(&[][..], |first| digits.get(first..).unwrap_or_default());
    let trailing_zeros = significant.iter().rev().take_while(|&&d| d == b'0').count();
    significant.len() - trailing_zeros <= MAX_DIGITS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_numbers_pass_and_rounded_ones_are_refused() {
        for ok in [
            "0",
            "-0",
            "42",
            "-9223372036854775808",
            "18446744073709551615",
            "0.1",
            "0.25",
            "1.50000000000000000000",
            "123456789012345",
            "1.23456789012345e300",
            "0.000000000000000000001",
            "1e-7",
        ] {
            assert!(check(ok.as_bytes()).is_ok(), "{ok}");
        }
        for rounded in [
            "18446744073709551616",
            "-9223372036854775809",
            "100000000000000000001",
            "0.30000000000000001",
            "1234567890123456.7",
            "9007199254740993.0",
            "1.0000000000000001e2",
        ] {
            assert!(check(rounded.as_bytes()).is_err(), "{rounded}");
        }
    }

    #[test]
    fn strings_and_escapes_are_skipped() {
        assert!(check(br#"{"a\"100000000000000000001": "0.30000000000000001"}"#).is_ok());
        assert!(check(br#"{"a": "\\", "b": 100000000000000000001}"#).is_err());
        // Broken JSON is the parser's to refuse; the check never panics on it.
        assert!(check(br#"{"a": "unterminated"#).is_ok());
        assert!(check(b"-").is_ok());
        assert!(check(b"1e").is_ok());
    }
}
