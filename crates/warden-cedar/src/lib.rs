//! An embedded Cedar policy decision point for Warden, on [cedar-policy].
//!
//! [`CedarPdp`] loads a package of `.cedar` policies, a schema and entities, validates the
//! policies strictly against the schema once, and answers every access request with Cedar's
//! authorizer. Obligations, advice and reasons come from annotations of the *determining*
//! policies (the satisfied permits of a permit, the satisfied forbids of a deny).
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use warden_cedar::CedarPdp;
//! use warden_decision::{AccessRequest, Action, Obligation, Pdp, Resource, Subject};
//!
//! let pdp = CedarPdp::builder()
//!     .schema(r#"
//!         entity User = { role?: String };
//!         entity Route;
//!         action "GET" appliesTo { principal: User, resource: Route };
//!     "#)
//!     .policy("routes.cedar", r#"
//!         @id("nurses-read")
//!         @obligation("{\"type\": \"redact\", \"paths\": [\"$..ssn\"], \"with\": \"last4\"}")
//!         permit (principal, action == Action::"GET", resource == Route::"/patients")
//!         when { principal has role && principal.role == "nurse" };
//!
//!         @id("no-guests")
//!         @reason("guests may not read patients")
//!         forbid (principal, action, resource == Route::"/patients")
//!         when { principal has role && principal.role == "guest" };
//!     "#)
//!     .build()
//!     .unwrap();
//!
//! let request = |role: &str| AccessRequest::new(
//!     Subject::user("nina").with_property("role", role),
//!     Action::new("GET"),
//!     Resource::new("route", "/patients"),
//! );
//! let permit = pdp.decide(&request("nurse")).await.unwrap();
//! assert!(permit.allowed);
//! assert!(matches!(permit.obligations.as_slice(), [Obligation::Redact(_)]));
//!
//! let deny = pdp.decide(&request("guest")).await.unwrap();
//! assert!(!deny.allowed);
//! assert_eq!(deny.reasons[0].message, "guests may not read patients");
//! assert!(pdp.decide(&request("doctor")).await.unwrap().not_applicable);
//! # });
//! ```
//!
//! # From an access request to a Cedar request
//!
//! | AuthZEN                    | Cedar                                                       |
//! |----------------------------|-------------------------------------------------------------|
//! | `subject {type, id}`       | principal `<Type>::"<id>"`                                  |
//! | `subject.properties`       | attributes of the principal entity                          |
//! | `action.name`              | action `Action::"<name>"` (`GET`, `select`, ...)            |
//! | `action.properties`        | `context.action`, a record (only when there are properties) |
//! | `resource {type, id}`      | resource `<Type>::"<id>"`                                   |
//! | `resource.properties`      | attributes of the resource entity                           |
//! | `context`                  | the context record                                          |
//!
//! **Entity types.** An AuthZEN type becomes a Cedar entity type in upper camel case: `user` →
//! `User`, `route` → `Route`, `table` → `Table`, `service_account` → `ServiceAccount`. With a
//! namespace ([`CedarPdpBuilder::namespace`] or `namespace` in the manifest's `[cedar]` table)
//! types and actions are qualified: `Clinic::User`, `Clinic::Action::"GET"`. Any type can be
//! mapped explicitly with [`CedarPdpBuilder::entity_type`] (`route` → `Http::Route`). A type
//! that has no valid name (empty, non-ASCII, starting with a digit) makes the decision a deny.
//! So the HTTP PEP's requests read `User::"alice"`, `Action::"GET"`,
//! `Route::"/clinics/{clinic_id}/patients"` with `resource.params.clinic_id` and
//! `resource.query`; the SQL PEP's read `Action::"select"`, `Table::"public.patients"`.
//!
//! **Only what the policies read.** When the package loads, Warden collects every attribute
//! name the policies access (`e.name`, `e["name"]`, `e has name`). Cedar reads entity
//! attributes only by name, so a subject or resource property whose name no policy mentions
//! cannot change a decision and is not mapped at all: the many claims of a JWT cost nothing.
//! The same holds for context attributes, unless a policy uses `context` as a whole value
//! (`context == {...}`), in which case the whole context is mapped.
//!
//! **Values.** Strings, booleans, 64-bit integers, arrays (as sets) and objects (as records)
//! map to their Cedar counterparts; `{"__entity": {"type": "User", "id": "bob"}}` is an entity
//! reference, as in Cedar's entity JSON. `null` means *absent*: the attribute (or set element)
//! is left out, so `has` is false. A number Cedar cannot represent (a fraction, an integer
//! beyond 64 bits) or a value nested deeper than 32 levels, in a property or context attribute
//! a policy reads, is **rejected**: the decision is a deny with a policy-error diagnostic
//! naming the value's path. Dropping such a value instead could stop a `forbid` that tests it
//! from applying.
//!
//! **Entities.** The principal and the resource are request-scoped entities built from the
//! properties. When the stored entities (`entities.json`, or an [`EntityProvider`]) hold the
//! same uid, the stored entity keeps its parents, tags and attributes, and the request's
//! properties only add attributes it does not have: the application's store wins over
//! claims and route parameters. Request properties and the context are not checked against
//! the schema (JWTs carry claims a schema does not declare, PEPs add context attributes);
//! strictly validated policies cannot read undeclared attributes, and a value of the wrong
//! type makes the policy that reads it fail to evaluate (see below). `entities.json` suits small, static sets (groups, roles): the
//! stored set is copied into the entity set of a request. Large or changing sets belong in an
//! [`EntityProvider`], which supplies per request what the policies need.
//!
//! Without a provider, the entity set built for a request is remembered (up to 1024 sets per
//! loaded revision) under the subject's and resource's type, id and the properties policies
//! read, so the same user asking for the same route with the same parameters again skips
//! the conversion; the stored entities with a request-scoped resource are remembered the same
//! way, so a new user on a known route adds only itself. A hit is confirmed by comparing
//! those values, never by hash alone, and a reload starts afresh.
//!
//! # Many policies
//!
//! A request is authorized against the policies whose scope can hold for it, not against
//! the whole set. When the package loads, each policy is filed under its scope (the
//! resource's entity or type, else the action, else the principal, else *any*); a request
//! collects the policies filed under its resource, action and principal and their ancestors
//! in the request's entities (route groups, action groups, user groups), checks each one's
//! scope exactly as Cedar would, and is authorized against that sub-set, built once per
//! distinct sub-set and remembered (up to 4096 per loaded revision). A policy whose scope
//! does not hold is neither satisfied nor erroring, so the decision, its determining
//! policies (and their obligations and reasons) and its errors are those of the whole set.
//! Rules written per route or per action therefore cost what the rules of one route cost;
//! rules whose scope is open (`permit (principal, action, resource) when {...}`) apply to
//! every request and are evaluated for each.
//!
//! # Annotations
//!
//! | annotation                        | on      | meaning                                          |
//! |-----------------------------------|---------|--------------------------------------------------|
//! | `@id("clinic.read")`              | any     | the policy id (default `<file stem>.<index>`)    |
//! | `@obligation("<JSON object>")`    | permit  | one obligation, validated when the package loads |
//! | `@advice("<JSON object>")`        | any     | one advice `{"type", ...}`                      |
//! | `@reason("...")`                  | any     | a reason for logs, never shown to the caller     |
//! | `@reason_code("...")`             | any     | the stable code of that reason                   |
//!
//! A permit decision carries the obligations, advice and reasons of every determining permit,
//! a deny those of every determining forbid; identical obligations are kept once, in policy
//! load order (files in path order, policies in source order). To attach several obligations
//! to one rule, write one permit per obligation with the same condition: all of them are
//! determining. A malformed `@obligation` (not JSON, not a valid obligation), an obligation
//! on a forbid, and misspellings such as `@obligations` fail the load, never a request. A deny
//! that no policy determined (Cedar's default deny) has no reasons and is *not applicable*.
//!
//! # Evaluation errors
//!
//! Cedar skips a policy whose condition fails to evaluate (an overflow, a missing entity, an
//! attribute of the wrong type) and decides with the others. An erroring permit therefore
//! never permits. An erroring **forbid**, though, does not forbid either, and a satisfied
//! permit then wins; and an erroring permit that would have been determining takes its
//! obligations (a redaction, a step-up) with it while another permit still permits. Both
//! would let a broken policy or a malformed claim *widen* access, so by default
//! ([`CedarPdpBuilder::deny_on_error`] `true`) any evaluation error makes the decision a deny,
//! with one policy-error diagnostic per erroring policy, naming it. With
//! `deny_on_error(false)` Cedar's semantics apply unchanged: the erroring policies are
//! skipped and still reported as policy-error diagnostics, and the decision is whatever the
//! other policies say.
//!
//! # Package layout
//!
//! Every `.cedar` file under the directory holds policies (static policies only, no
//! templates). `*.cedarschema` (Cedar syntax) and `*.cedarschema.json` files form the schema;
//! with a schema every policy is validated in strict mode when the package loads, and a
//! policy that does not validate fails the load with its file, line and column and Cedar's
//! message. `entities.json` files hold entities in Cedar's JSON format, checked against the
//! schema. The manifest `warden.toml` names the package and its version; other keys are
//! tolerated:
//!
//! ```toml
//! id = "clinic"
//! version = "1.0.0"
//!
//! [cedar]                      # optional
//! namespace = "Clinic"
//! entity_types = { route = "Http::Route" }
//! ```
//!
//! The policy revision is the version with a hash of every file read
//! (`1.0.0+sha256.3f9a0c...`, 16 hex digits), or the hash alone without a manifest.
//! [`CedarPdp::reload`] reads the package again and swaps it in atomically; when the new one
//! fails to load the PDP keeps deciding with the last good revision.
//!
//! [cedar-policy]: https://docs.rs/cedar-policy

mod entities;
mod index;
mod load;
mod mapping;
mod outcome;
mod provider;
mod referenced;

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use arc_swap::ArcSwap;
use cedar_policy::{Authorizer, Entities, EntityUid, Request};
use warden_decision::{
    AccessRequest, Decision, ErrorClass, Pdp, PdpError, PdpFuture, PolicyRevision,
};

pub use load::{LoadError, Position};
pub use provider::{EntityFuture, EntityProvider, ProviderError};

use load::SchemaText;
use provider::SharedProvider;

/// Builds a [`CedarPdp`].
#[derive(Debug, Clone)]
#[must_use]
pub struct CedarPdpBuilder {
    source: Source,
    policy_id: Option<String>,
    namespace: Option<String>,
    entity_types: Vec<(String, String)>,
    deny_on_error: bool,
    provider: Option<SharedProvider>,
    status: Option<warden_decision::PackageStatus>,
}

#[derive(Debug, Clone)]
enum Source {
    Inline {
        policies: Vec<(String, String)>,
        schemas: Vec<SchemaText>,
        entities: Vec<serde_json::Value>,
    },
    Dir(PathBuf),
}

impl CedarPdpBuilder {
    fn inline(&mut self) -> &mut Source {
        if matches!(self.source, Source::Dir(_)) {
            self.source = Source::Inline {
                policies: Vec::new(),
                schemas: Vec::new(),
                entities: Vec::new(),
            };
        }
        &mut self.source
    }

    /// Adds a file of policies from source text (instead of a directory). `name` gives the
    /// default policy ids (`<stem>.<index>`) and appears in load errors.
    pub fn policy(mut self, name: impl Into<String>, cedar: impl Into<String>) -> Self {
        if let Source::Inline { policies, .. } = self.inline() {
            policies.push((name.into(), cedar.into()));
        }
        self
    }

    /// Adds a schema in Cedar schema syntax; the policies are validated against it (strict).
    pub fn schema(mut self, cedarschema: impl Into<String>) -> Self {
        if let Source::Inline { schemas, .. } = self.inline() {
            schemas.push(SchemaText::Cedar(cedarschema.into()));
        }
        self
    }

    /// Adds a schema in Cedar's JSON schema syntax.
    pub fn schema_json(mut self, schema: serde_json::Value) -> Self {
        if let Source::Inline { schemas, .. } = self.inline() {
            schemas.push(SchemaText::Json(schema.to_string()));
        }
        self
    }

    /// Adds stored entities in Cedar's entity JSON format (an array).
    pub fn entities_json(mut self, document: serde_json::Value) -> Self {
        if let Source::Inline { entities, .. } = self.inline() {
            entities.push(document);
        }
        self
    }

    /// Loads the package from a directory (see the crate docs for the layout).
    pub fn directory(mut self, dir: impl AsRef<Path>) -> Self {
        self.source = Source::Dir(dir.as_ref().to_path_buf());
        self
    }

    /// Supplies entities per request from the application's store.
    pub fn entity_provider(mut self, provider: impl EntityProvider + 'static) -> Self {
        self.provider = Some(SharedProvider(Arc::new(provider)));
        self
    }

    /// The policy id reported in decisions (default: the manifest's `id`, the directory name,
    /// or `inline`).
    pub fn policy_id(mut self, id: impl Into<String>) -> Self {
        self.policy_id = Some(id.into());
        self
    }

    /// The Cedar namespace of the mapped entity types and actions (default: the manifest's
    /// `[cedar] namespace`, else none).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Maps the AuthZEN type `kind` to the Cedar entity type `cedar_type` (a full name; the
    /// namespace is not added). Overrides the manifest's `[cedar.entity_types]`.
    pub fn entity_type(mut self, kind: impl Into<String>, cedar_type: impl Into<String>) -> Self {
        self.entity_types.push((kind.into(), cedar_type.into()));
        self
    }

    /// Whether an evaluation error in any policy makes the decision a deny (default `true`).
    /// See the crate docs: with `false` Cedar skips erroring policies, which can let an
    /// erroring forbid or an erroring obligation-carrying permit widen access.
    pub fn deny_on_error(mut self, deny: bool) -> Self {
        self.deny_on_error = deny;
        self
    }

    /// Decides with `status` instead of the manifest's (`warden test` and `warden replay`
    /// evaluate a package as if it were active).
    pub fn status(mut self, status: warden_decision::PackageStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Loads, validates and compiles the package.
    pub fn build(self) -> Result<CedarPdp, LoadError> {
        let loaded = self.load()?;
        Ok(CedarPdp {
            state: ArcSwap::from_pointee(loaded),
            builder: self,
        })
    }

    fn load(&self) -> Result<Loaded, LoadError> {
        let bundle = match &self.source {
            Source::Inline {
                policies,
                schemas,
                entities,
            } => load::Bundle::inline(policies, schemas, entities)?,
            Source::Dir(dir) => load::Bundle::read_dir(dir)?,
        };
        let manifest = bundle.manifest.as_ref().map(|m| &m.cedar);
        let namespace = self
            .namespace
            .as_deref()
            .or_else(|| manifest.and_then(|m| m.namespace.as_deref()));
        let mut entity_types: Vec<(String, String)> = manifest
            .map(|m| {
                let mut pairs: Vec<(String, String)> = m
                    .entity_types
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                pairs.sort();
                pairs
            })
            .unwrap_or_default();
        entity_types.extend(self.entity_types.iter().cloned());
        let policy_id = self
            .policy_id
            .clone()
            .unwrap_or_else(|| bundle.default_id().to_owned());
        let gate = bundle.gate(match &self.source {
            Source::Dir(dir) => Some(dir.as_path()),
            Source::Inline { .. } => None,
        })?;
        let gate = match self.status {
            Some(status) => gate.with_status(status),
            None => gate,
        };
        let revision = gate.stamp(PolicyRevision::new(policy_id, bundle.revision()));
        let (compiled, referenced) = guarded(|| {
            load::compile(&bundle).map(|c| {
                let referenced = referenced::Referenced::of(&c.policies);
                (c, referenced)
            })
        })
        .map_err(LoadError::Engine)??;
        let mapper = mapping::Mapper::new(namespace, &entity_types, referenced)?;
        let index = index::ScopeIndex::new(&compiled.policies);
        Ok(Loaded {
            revision,
            gate,
            compiled,
            index,
            mapper,
            authorizer: Authorizer::new(),
            deny_on_error: self.deny_on_error,
            cache: entities::EntityCache::default(),
        })
    }
}

/// An embedded Cedar PDP. Cheap to share (`Arc`), safe under concurrent use from many tasks:
/// Cedar's authorizer takes `&self`, and the loaded package is swapped atomically on reload.
pub struct CedarPdp {
    state: ArcSwap<Loaded>,
    builder: CedarPdpBuilder,
}

impl fmt::Debug for CedarPdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loaded = self.state.load();
        f.debug_struct("CedarPdp")
            .field("revision", &loaded.revision)
            .field("policies", &loaded.compiled.meta.len())
            .field("schema", &loaded.compiled.schema.is_some())
            .field("deny_on_error", &loaded.deny_on_error)
            .field("entity_provider", &self.builder.provider.is_some())
            .finish()
    }
}

impl CedarPdp {
    /// A builder with the defaults: no schema, no entities, `deny_on_error(true)`.
    pub fn builder() -> CedarPdpBuilder {
        CedarPdpBuilder {
            source: Source::Inline {
                policies: Vec::new(),
                schemas: Vec::new(),
                entities: Vec::new(),
            },
            policy_id: None,
            namespace: None,
            entity_types: Vec::new(),
            deny_on_error: true,
            provider: None,
            status: None,
        }
    }

    /// Loads a policy directory with the defaults.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, LoadError> {
        Self::builder().directory(dir).build()
    }

    /// Reloads the package from its directory and swaps it in atomically. On error the PDP
    /// keeps deciding with the revision it had.
    pub fn reload(&self) -> Result<PolicyRevision, LoadError> {
        let loaded = self.builder.load()?;
        let revision = loaded.revision.clone();
        let previous = self.state.swap(Arc::new(loaded));
        if previous.revision != revision {
            tracing::info!(
                policy = %revision.id,
                from = %previous.revision.revision,
                to = %revision.revision,
                "cedar policy reloaded"
            );
        }
        Ok(revision)
    }

    /// The ids of the loaded policies, in load order.
    pub fn policy_ids(&self) -> Vec<String> {
        self.state
            .load()
            .compiled
            .meta
            .iter()
            .map(|m| m.id.clone())
            .collect()
    }

    /// How many decisions each policy determined since the package was (re)loaded, in load
    /// order: a policy that never determined one is untested (`warden test --coverage`) or
    /// dead in production.
    pub fn determined_counts(&self) -> Vec<(String, u64)> {
        let loaded = self.state.load();
        loaded
            .compiled
            .meta
            .iter()
            .zip(&loaded.compiled.determined)
            .map(|(m, n)| (m.id.clone(), n.load(std::sync::atomic::Ordering::Relaxed)))
            .collect()
    }

    fn decide_now(&self, request: &AccessRequest, provided: Option<serde_json::Value>) -> Decision {
        let loaded = self.state.load();
        // The manifest's status and exceptions apply around the evaluation.
        loaded.gate.decide(request, loaded.revision.clone(), || {
            guarded(|| loaded.decide(request, provided)).unwrap_or_else(|message| {
                Decision::deny().with_error(ErrorClass::PolicyError, message)
            })
        })
    }
}

impl Pdp for CedarPdp {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        match &self.builder.provider {
            None => Box::pin(std::future::ready(Ok(self.decide_now(request, None)))),
            Some(SharedProvider(provider)) => Box::pin(async move {
                let entities = Guarded(provider.entities(request))
                    .await
                    .map_err(|message| {
                        PdpError::unavailable(format!("entity provider failed: {message}"))
                    })?
                    .map_err(|e| PdpError::unavailable(format!("entity provider failed: {e}")))?;
                Ok(self.decide_now(request, Some(entities)))
            }),
        }
    }

    fn revision(&self) -> Option<PolicyRevision> {
        Some(self.state.load().revision.clone())
    }
}

/// A loaded package.
struct Loaded {
    revision: PolicyRevision,
    gate: warden_decision::PackageGate,
    compiled: load::Compiled,
    /// The policies by scope: a request is authorized against those that can apply to it.
    index: index::ScopeIndex,
    mapper: mapping::Mapper,
    authorizer: Authorizer,
    deny_on_error: bool,
    cache: entities::EntityCache,
}

impl Loaded {
    fn decide(&self, request: &AccessRequest, provided: Option<serde_json::Value>) -> Decision {
        let deny = |message: String| Decision::deny().with_error(ErrorClass::PolicyError, message);
        let unmappable =
            |e: mapping::MapError| deny(format!("the request cannot be put to Cedar: {e}"));
        let cached;
        let built;
        let (principal, resource, entities) = match provided {
            None => {
                let read = |name: &str| self.mapper.reads_attribute(name);
                let (hash, hit) = self.cache.get(request, &read);
                cached = match hit {
                    Some(hit) => hit,
                    None => {
                        let uids = match self.mapper.principal_and_resource(request) {
                            Ok(uids) => uids,
                            Err(e) => return unmappable(e),
                        };
                        match self.remembered_entities(request, &uids, &read) {
                            Ok(entities) => self.cache.put(hash, request, &read, uids, entities),
                            Err(message) => return deny(message),
                        }
                    }
                };
                (
                    cached.principal.clone(),
                    cached.resource_uid.clone(),
                    &cached.entities,
                )
            }
            Some(json) => {
                let (principal, resource) = match self.mapper.principal_and_resource(request) {
                    Ok(uids) => uids,
                    Err(e) => return unmappable(e),
                };
                let base = match self.provided(json) {
                    Ok(base) => base,
                    Err(message) => return deny(message),
                };
                let uids = (principal, resource);
                built = match self.entities(&base, request, &uids) {
                    Ok(entities) => entities,
                    Err(message) => return deny(message),
                };
                (uids.0, uids.1, &built)
            }
        };
        let context = match self.mapper.context(request) {
            Ok(context) => context,
            Err(e) => return unmappable(e),
        };
        let action = self.mapper.action(request);
        let cedar_request = match Request::new(principal, action, resource, context, None) {
            Ok(r) => r,
            Err(e) => return deny(format!("the Cedar request cannot be built: {e}")),
        };
        let response = match (
            cedar_request.principal(),
            cedar_request.action(),
            cedar_request.resource(),
        ) {
            (Some(principal), Some(action), Some(resource)) => {
                let policies = self.index.select(entities, principal, action, resource);
                self.authorizer
                    .is_authorized(&cedar_request, &policies, entities)
            }
            _ => self
                .authorizer
                .is_authorized(&cedar_request, &self.compiled.policies, entities),
        };
        outcome::interpret(&response, &self.compiled, self.deny_on_error)
    }

    /// The stored entities with the provider's, which replace stored ones of the same uid.
    fn provided(&self, json: serde_json::Value) -> Result<Entities, String> {
        let invalid = |e: cedar_policy::entities_errors::EntitiesError| {
            format!("the entity provider's entities are invalid: {e}")
        };
        let provided =
            Entities::from_json_value(json, self.compiled.schema.as_ref()).map_err(invalid)?;
        if self.compiled.entities.is_empty() {
            return Ok(provided);
        }
        self.compiled
            .entities
            .clone()
            .upsert_entities(provided, None)
            .map_err(invalid)
    }

    /// The stored entities with the request-scoped principal and resource, starting from the
    /// remembered set of the resource when there is one.
    fn remembered_entities(
        &self,
        request: &AccessRequest,
        uids: &(EntityUid, EntityUid),
        read: &dyn Fn(&str) -> bool,
    ) -> Result<Entities, String> {
        let (principal, resource) = uids;
        if principal == resource {
            return self.entities(&self.compiled.entities, request, uids);
        }
        let (hash, hit) = self.cache.resource(request, read);
        let with_resource = match hit {
            Some(hit) => hit,
            None => {
                let attrs = self.attributes(&request.resource.properties, "resource.properties")?;
                let entities =
                    entities::with_scoped(&self.compiled.entities, resource.clone(), attrs)
                        .map_err(Self::unbuildable)?;
                self.cache.put_resource(hash, request, read, entities)
            }
        };
        let attrs = self.attributes(&request.subject.properties, "subject.properties")?;
        entities::with_scoped(&with_resource.entities, principal.clone(), attrs)
            .map_err(Self::unbuildable)
    }

    /// `base` with the request-scoped principal and resource.
    fn entities(
        &self,
        base: &Entities,
        request: &AccessRequest,
        (principal, resource): &(EntityUid, EntityUid),
    ) -> Result<Entities, String> {
        let principal_attrs = self.attributes(&request.subject.properties, "subject.properties")?;
        let resource_attrs =
            self.attributes(&request.resource.properties, "resource.properties")?;
        if principal == resource {
            let attrs = entities::merged(principal_attrs, resource_attrs);
            return entities::with_scoped(base, principal.clone(), attrs)
                .map_err(Self::unbuildable);
        }
        let with_resource = entities::with_scoped(base, resource.clone(), resource_attrs)
            .map_err(Self::unbuildable)?;
        entities::with_scoped(&with_resource, principal.clone(), principal_attrs)
            .map_err(Self::unbuildable)
    }

    fn attributes(
        &self,
        properties: &serde_json::Map<String, serde_json::Value>,
        path: &str,
    ) -> Result<mapping::Attributes, String> {
        self.mapper
            .attributes(properties, path)
            .map_err(|e| format!("the request cannot be put to Cedar: {e}"))
    }

    fn unbuildable(message: String) -> String {
        format!("the request's entities cannot be built: {message}")
    }
}

/// Runs an engine call so that a panic inside the engine cannot take the request down: the
/// decision becomes a policy error.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| "the policy engine panicked".to_owned())
}

/// A future whose panics become errors (for entity providers, which are application code).
struct Guarded<'a, T>(Pin<Box<dyn Future<Output = T> + Send + 'a>>);

impl<T> Future for Guarded<'_, T> {
    type Output = Result<T, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err("the entity provider panicked".to_owned())),
        }
    }
}

#[cfg(test)]
mod tests;
