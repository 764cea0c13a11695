//! The exit statuses of every `warden` subcommand: one scheme, documented in `--help`.

use std::process::ExitCode;

/// How a `warden` command ended.
///
/// | status | meaning |
/// |---|---|
/// | 0 | permit, or success |
/// | 1 | deny, or a check that failed (a test case, a replay gate) |
/// | 2 | usage: bad arguments, unreadable or malformed input |
/// | 3 | a policy or configuration error: a policy that does not load, a missing catalog |
/// | 4 | the PDP is unavailable: unreachable, timed out, answering garbage |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Permit, or success.
    Ok = 0,
    /// Deny, or a check that failed.
    Deny = 1,
    /// Bad arguments or input.
    Usage = 2,
    /// A policy or configuration error.
    Config = 3,
    /// The PDP is unavailable.
    Unavailable = 4,
}

/// The scheme as `--help` shows it, after every subcommand's help.
pub(crate) const HELP: &str = "\
Exit status (every subcommand):
  0  permit, or success
  1  deny, or a check that failed
  2  usage: bad arguments or malformed input
  3  policy or configuration error
  4  PDP unavailable";

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

impl Exit {
    /// The status for a PDP's error: unavailable (4) or a policy error (3).
    pub(crate) fn of_pdp_error(error: &warden_decision::PdpError) -> Self {
        if error.is_unavailable() {
            Self::Unavailable
        } else {
            Self::Config
        }
    }
}
