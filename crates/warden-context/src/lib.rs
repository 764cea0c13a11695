//! Context providers (PIPs): attributes from shared stores added to access requests.
