//! The policy set indexed by scope, so that a request is authorized against the policies that
//! can apply to it rather than against all of them.
//!
//! A Cedar policy is `scope && when && !unless`, and its scope (`principal == / in / is`,
//! `action == / in`, `resource == / in / is`) cannot fail to evaluate. A policy whose scope
//! does not hold for a request is therefore neither satisfied nor erroring: leaving it out
//! changes neither the decision, nor the determining policies, nor the errors. At load, every
//! policy is filed under one key of its scope (the resource's entity or type if the scope
//! constrains it, else the action, else the principal, else "any"). For a request, the
//! buckets of its resource, action and principal (and of their ancestors in the request's
//! entities) give the candidates; each candidate's whole scope is then checked exactly, with
//! Cedar's `in` semantics on the same entities Cedar will see. The sub-set for each distinct
//! list of applicable policies is built once and remembered (up to [`REMEMBERED`] lists per
//! loaded revision; beyond that it is built per request).
//!
//! ```text
//! permit (principal, action == Action::"GET", resource == Route::"/clinics");   // Route::"/clinics"
//! permit (principal is User, action in [Action::"GET", Action::"HEAD"], resource); // Action::"GET", Action::"HEAD"
//! forbid (principal in Group::"banned", action, resource);                     // Group::"banned"
//! permit (principal, action, resource) when { ... };                           // any
//! ```

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cedar_policy::{
    ActionConstraint, Entities, EntityTypeName, EntityUid, Policy, PolicySet, PrincipalConstraint,
    ResourceConstraint,
};

use crate::entities::FxBuild;

/// How many distinct sub-sets are remembered per loaded revision.
pub(crate) const REMEMBERED: usize = 4096;

type Buckets<K> = HashMap<K, Vec<u32>, FxBuild>;

/// The scope of one policy, as Cedar's API reports it.
struct Scope {
    principal: PrincipalConstraint,
    action: ActionConstraint,
    resource: ResourceConstraint,
}

/// `entity in ancestor`, with Cedar's semantics: equal, or an ancestor in `entities` (an
/// entity that `entities` does not hold is in itself only).
fn is_in(entities: &Entities, entity: &EntityUid, ancestor: &EntityUid) -> bool {
    entity == ancestor || entities.is_ancestor_of(ancestor, entity)
}

impl Scope {
    fn applies(
        &self,
        entities: &Entities,
        principal: &EntityUid,
        action: &EntityUid,
        resource: &EntityUid,
    ) -> bool {
        let principal_holds = match &self.principal {
            PrincipalConstraint::Any => true,
            PrincipalConstraint::Eq(uid) => principal == uid,
            PrincipalConstraint::In(uid) => is_in(entities, principal, uid),
            PrincipalConstraint::Is(ty) => principal.type_name() == ty,
            PrincipalConstraint::IsIn(ty, uid) => {
                principal.type_name() == ty && is_in(entities, principal, uid)
            }
        };
        let action_holds = match &self.action {
            ActionConstraint::Any => true,
            ActionConstraint::Eq(uid) => action == uid,
            ActionConstraint::In(uids) => uids.iter().any(|uid| is_in(entities, action, uid)),
        };
        let resource_holds = match &self.resource {
            ResourceConstraint::Any => true,
            ResourceConstraint::Eq(uid) => resource == uid,
            ResourceConstraint::In(uid) => is_in(entities, resource, uid),
            ResourceConstraint::Is(ty) => resource.type_name() == ty,
            ResourceConstraint::IsIn(ty, uid) => {
                resource.type_name() == ty && is_in(entities, resource, uid)
            }
        };
        principal_holds && action_holds && resource_holds
    }
}

/// The policies of a set filed by scope, and the sub-sets built so far.
pub(crate) struct ScopeIndex {
    whole: Arc<PolicySet>,
    policies: Vec<Policy>,
    scopes: Vec<Scope>,
    resources: Buckets<EntityUid>,
    resource_types: Buckets<EntityTypeName>,
    actions: Buckets<EntityUid>,
    principals: Buckets<EntityUid>,
    principal_types: Buckets<EntityTypeName>,
    any: Vec<u32>,
    whole_only: bool,
    subsets: RwLock<HashMap<Box<[u32]>, Arc<PolicySet>, FxBuild>>,
}

impl ScopeIndex {
    /// Files every policy of `whole` under one key of its scope.
    pub(crate) fn new(whole: &PolicySet) -> Self {
        let mut index = Self {
            whole: Arc::new(whole.clone()),
            policies: Vec::new(),
            scopes: Vec::new(),
            resources: Buckets::default(),
            resource_types: Buckets::default(),
            actions: Buckets::default(),
            principals: Buckets::default(),
            principal_types: Buckets::default(),
            any: Vec::new(),
            whole_only: false,
            subsets: RwLock::default(),
        };
        for policy in whole.policies() {
            let Ok(n) = u32::try_from(index.policies.len()) else {
                // More policies than an index can number: decide with the whole set.
                index.whole_only = true;
                break;
            };
            let scope = Scope {
                principal: policy.principal_constraint(),
                action: policy.action_constraint(),
                resource: policy.resource_constraint(),
            };
            index.file(n, &scope);
            index.policies.push(policy.clone());
            index.scopes.push(scope);
        }
        index
    }

    fn file(&mut self, n: u32, scope: &Scope) {
        let put = |buckets: &mut Buckets<EntityUid>, uid: &EntityUid| {
            buckets.entry(uid.clone()).or_default().push(n);
        };
        match &scope.resource {
            ResourceConstraint::Eq(uid)
            | ResourceConstraint::In(uid)
            | ResourceConstraint::IsIn(_, uid) => return put(&mut self.resources, uid),
            ResourceConstraint::Is(ty) => {
                return self.resource_types.entry(ty.clone()).or_default().push(n);
            }
            ResourceConstraint::Any => {}
        }
        match &scope.action {
            ActionConstraint::Eq(uid) => return put(&mut self.actions, uid),
            ActionConstraint::In(uids) => {
                for uid in uids {
                    put(&mut self.actions, uid);
                }
                return;
            }
            ActionConstraint::Any => {}
        }
        match &scope.principal {
            PrincipalConstraint::Eq(uid)
            | PrincipalConstraint::In(uid)
            | PrincipalConstraint::IsIn(_, uid) => put(&mut self.principals, uid),
            PrincipalConstraint::Is(ty) => {
                self.principal_types.entry(ty.clone()).or_default().push(n)
            }
            PrincipalConstraint::Any => self.any.push(n),
        }
    }

    /// The indexes, in filing order, of the policies whose scope holds for the request.
    pub(crate) fn applicable(
        &self,
        entities: &Entities,
        principal: &EntityUid,
        action: &EntityUid,
        resource: &EntityUid,
    ) -> Vec<u32> {
        let mut candidates = self.any.clone();
        let mut from = |buckets: &Buckets<EntityUid>, uid: &EntityUid| {
            if let Some(found) = buckets.get(uid) {
                candidates.extend_from_slice(found);
            }
            for ancestor in entities.ancestors(uid).into_iter().flatten() {
                if let Some(found) = buckets.get(ancestor) {
                    candidates.extend_from_slice(found);
                }
            }
        };
        from(&self.resources, resource);
        from(&self.actions, action);
        from(&self.principals, principal);
        for (buckets, ty) in [
            (&self.resource_types, resource.type_name()),
            (&self.principal_types, principal.type_name()),
        ] {
            if let Some(found) = buckets.get(ty) {
                candidates.extend_from_slice(found);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates.retain(|&n| {
            usize::try_from(n)
                .ok()
                .and_then(|n| self.scopes.get(n))
                .is_none_or(|scope| scope.applies(entities, principal, action, resource))
        });
        candidates
    }

    /// The policies to authorize the request against: those whose scope holds, the whole set
    /// when that is all of them (or when a sub-set cannot be built).
    pub(crate) fn select(
        &self,
        entities: &Entities,
        principal: &EntityUid,
        action: &EntityUid,
        resource: &EntityUid,
    ) -> Arc<PolicySet> {
        if self.whole_only {
            return Arc::clone(&self.whole);
        }
        let applicable = self.applicable(entities, principal, action, resource);
        if applicable.len() >= self.policies.len() {
            return Arc::clone(&self.whole);
        }
        if let Some(found) = self
            .subsets
            .read()
            .ok()
            .and_then(|subsets| subsets.get(applicable.as_slice()).cloned())
        {
            return found;
        }
        let policies = applicable
            .iter()
            .filter_map(|&n| self.policies.get(usize::try_from(n).ok()?).cloned());
        let Ok(subset) = PolicySet::from_policies(policies) else {
            return Arc::clone(&self.whole);
        };
        let subset = Arc::new(subset);
        if let Ok(mut subsets) = self.subsets.write()
            && subsets.len() < REMEMBERED
        {
            subsets.insert(applicable.into_boxed_slice(), Arc::clone(&subset));
        }
        subset
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
