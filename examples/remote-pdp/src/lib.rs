//! The clinic service of `examples/clinic`, deciding through a remote PDP: the Warden PDP
//! server (`warden serve --policy policies/clinic`) or any AuthZEN 1.0 PDP.
//!
//! The only change from the embedded example is the decision point: an AuthZEN client wrapped
//! in a timeout, a circuit breaker, a decision cache and a fallback.

use std::time::Duration;

use tower_warden::remote::{RemoteError, RemotePdp};
use tower_warden::{BreakerConfig, CacheConfig, FallbackMode, Pdp, PdpExt};

// ANCHOR: remote
/// The decision point of the service: the PDP at `url`, with the resilience stack the book
/// recommends. From the inside out:
///
/// * the AuthZEN client gives each call 250 ms, and keeps a revision watch open on the PDP, so
///   a policy change reaches it within a round trip (or, with the watch lost, within 1 s);
/// * the circuit breaker stops calling a PDP that failed (or answered garbage) 5 times in a
///   row, probes it again after 2 s, and lets traffic back in over 1 s, so requests fail fast
///   instead of waiting out timeouts, and a recovering PDP is not hit by everything at once;
/// * the cache answers repeated requests for the same policy revision without a round trip,
///   for at most 30 s after the PDP made each decision, and never keeps a decision across a
///   policy change;
/// * the fallback serves the last decision the PDP made for the same request, if it was made
///   less than 30 s ago under the revision in force, when the PDP is unavailable; anything
///   older, or never seen, is refused with a 503 (fail closed).
pub fn remote_pdp(url: &str) -> Result<impl Pdp + 'static, RemoteError> {
    let remote = RemotePdp::authzen(url)
        .timeout(Duration::from_millis(250))
        .build()?;
    Ok(remote
        .with_breaker(
            BreakerConfig::default()
                .consecutive_failures(5)
                .open_for(Duration::from_secs(2))
                .ramp_up(Duration::from_secs(1)),
        )
        .with_cache(CacheConfig::default())
        .with_fallback(FallbackMode::Stale {
            max_age: Duration::from_secs(30),
        }))
}
// ANCHOR_END: remote
