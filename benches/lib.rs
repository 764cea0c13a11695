//! Criterion benches of Warden, each measured beside its floor (see the `[[bench]]` targets).
