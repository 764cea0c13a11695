//! Context providers (policy information points): attributes from shared stores — Redis,
//! PostgreSQL, an HTTP service — added to each access request before the PDP decides.
//!
//! A package declares its attributes in its manifest ([`ContextConfig`]): which attributes,
//! from where, keyed by subject, resource or both, how long a value may be cached, and what
//! happens when the store is down (deny by default). [`ContextPdp`] wraps the package's PDP,
//! fetches the attributes concurrently within one timeout and puts them into `context` under
//! their names — replacing anything a caller sent under those names.
//!
//! | outcome of a fetch | `on_error = "deny"` (default) | `on_error = "omit"` |
//! |---|---|---|
//! | a value | `context.<name>` = the value | the same |
//! | the store has no value (missing key, no row, 404) | `context.<name>` = `null` | the same |
//! | the store is down, slow past the timeout, or answers garbage (not JSON, a wrong type, several rows) | the decision fails as unavailable: the PEP denies (HTTP 503) | `context.<name>` is absent |
//!
//! Session history is the worked example: [`SessionHistory`] records each subject's outcomes
//! in Redis (a sliding window shared by every replica), and a [`RedisProvider`] with
//! [`RedisRead::RecentDenials`] gives the policy the number of recent denials.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::time::Duration;
//! use warden_context::{Attribute, ContextPdp, FetchError, FetchFuture, KeyBy, Provider};
//! use warden_decision::{AccessRequest, Action, Pdp, Resource, Subject};
//!
//! /// A store that never answers.
//! struct Stuck;
//! impl Provider for Stuck {
//!     fn fetch<'a>(&'a self, _: &'a str) -> FetchFuture<'a> {
//!         Box::pin(std::future::pending())
//!     }
//! }
//!
//! let pdp = ContextPdp::new(warden_test::StaticPdp::permit())
//!     .attribute(Attribute::new("risk", KeyBy::Subject, Stuck))
//!     .timeout(Duration::from_millis(50));
//! let request = AccessRequest::new(Subject::new("user", "alice"), Action::new("GET"), Resource::new("route", "/p"));
//! assert!(pdp.decide(&request).await.is_err(), "no permit without the attribute");
//! # });
//! ```
//!
//! # Features
//!
//! | Name | Description | Default |
//! |---|---|---|
//! | `redis` | [`RedisProvider`], [`SessionHistory`] | yes |
//! | `postgres` | [`PostgresProvider`] (tokio-postgres) | yes |
//! | `http` | [`HttpProvider`] (reqwest) | yes |

mod config;
#[cfg(feature = "http")]
mod http;
mod pdp;
#[cfg(feature = "postgres")]
mod postgres;
mod provider;
#[cfg(feature = "redis")]
mod redis;

pub use config::{AttributeConfig, ConfigError, ContextConfig, Store};
#[cfg(feature = "http")]
pub use http::HttpProvider;
pub use pdp::ContextPdp;
#[cfg(feature = "postgres")]
pub use postgres::PostgresProvider;
pub use provider::{Attribute, FetchError, FetchFuture, KeyBy, OnError, Provider};
#[cfg(feature = "redis")]
pub use redis::{RedisProvider, RedisRead, SessionHistory};
