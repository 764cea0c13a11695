//! Warden's Cedar PDP beside a raw Cedar `Authorizer::is_authorized` call on the same policy
//! and request.
//!
//! DESIGN §9 target: a `CedarPdp::decide` costs at most 1.10 × a raw `is_authorized` with a
//! prebuilt request. The floor keeps the Cedar request and entities prebuilt, as an
//! application calling Cedar directly with fixed inputs would; Warden maps the access request
//! (principal, action, resource, context, request-scoped entities with the subject's claims
//! and the route's parameters), authorizes, and turns the determining policies' annotations
//! into a decision with obligations. Warden remembers the request-scoped entity set of a
//! subject, route and parameters it has seen; the `new_subject` group shows the cost when it
//! has not (every request from another subject), for information.
//!
//! The raw call authorizes against the whole policy set; Warden against the policies whose
//! scope can hold for the request (its scope index), so its ratio can fall below 1.
//!
//! The `rules` group puts the same request to the package with 60 and with 1,000 rules (the
//! added rules on other routes): issue target ≤ 2× for 1,000 rules, which the scope index
//! meets by authorizing against the rules that can apply; beside it, a raw whole-set call.
//!
//! The ratio line is the median of per-round ratios of alternating rounds (see `alternate`).
//!
//! Run: `cargo bench -p warden-benches --bench cedar_pdp -- --noplot`.
#![expect(clippy::unwrap_used, reason = "benchmark setup fails loudly")]

use std::hint::black_box;
use std::str::FromStr;
use std::time::{Duration, Instant};

use cedar_policy::{Authorizer, Context, Entities, EntityUid, PolicySet, Request};
use criterion::Criterion;
use serde_json::json;
use warden_cedar::CedarPdp;
use warden_decision::{AccessRequest, Pdp};

const POLICY_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/clinic-cedar");

fn request(route: &str, params: serde_json::Value) -> AccessRequest {
    serde_json::from_value(json!({
        "subject": {"type": "user", "id": "nina", "properties": {
            "role": "nurse", "clinics": ["c1"], "iat": 1_800_000_000, "exp": 1_800_003_600
        }},
        "action": {"name": "GET"},
        "resource": {"type": "route", "id": route, "properties": {"params": params, "query": {}}},
        "context": {"time": "2026-11-30T10:00:00Z"}
    }))
    .unwrap()
}

/// The same request, prebuilt for Cedar: what an application calling Cedar directly holds.
/// Its entities are the package's stored ones (the route groups) with the user and the
/// route carrying the request's claims and parameters.
fn raw(request: &AccessRequest) -> (Request, Entities) {
    let principal = EntityUid::from_str(&format!("User::{:?}", request.subject.id)).unwrap();
    let resource = EntityUid::from_str(&format!("Route::{:?}", request.resource.id)).unwrap();
    let action = EntityUid::from_str(&format!("Action::{:?}", request.action.name)).unwrap();
    let context =
        Context::from_json_value(serde_json::Value::Object(request.context.clone()), None).unwrap();
    let stored = std::fs::read_to_string(format!("{POLICY_DIR}/entities.json")).unwrap();
    let mut entities: Vec<serde_json::Value> = serde_json::from_str(&stored).unwrap();
    let route = json!({"type": "Route", "id": request.resource.id});
    match entities.iter_mut().find(|e| e["uid"] == route) {
        Some(e) => e["attrs"] = json!(request.resource.properties),
        None => entities
            .push(json!({"uid": route, "attrs": request.resource.properties, "parents": []})),
    }
    entities.push(json!({"uid": {"type": "User", "id": request.subject.id},
        "attrs": request.subject.properties, "parents": []}));
    let entities = Entities::from_json_value(json!(entities), None).unwrap();
    (
        Request::new(principal, action, resource, context, None).unwrap(),
        entities,
    )
}

/// `count` rules: the clinic package's policies and generated ones, each on one route of
/// another service with one method, as an HTTP API's rules are (a permit by role per route
/// and method, a forbid of `DELETE` per route for all but admins).
fn rules(count: usize) -> (CedarPdp, PolicySet) {
    let clinic = std::fs::read_to_string(format!("{POLICY_DIR}/clinic.cedar")).unwrap();
    let clinic_rules = PolicySet::from_str(&clinic).unwrap().policies().count();
    let methods = ["GET", "HEAD", "POST", "PUT", "PATCH"];
    let mut generated = String::new();
    for n in 0..count.saturating_sub(clinic_rules) {
        let (route, method) = (n / 6, n % 6);
        generated.push_str(&match methods.get(method) {
            Some(method) => format!(
                "@id(\"svc.{n}\")\npermit (principal is User, action == Action::\"{method}\", \
                 resource == Route::\"/svc/{route}/items\")\n\
                 when {{ principal has role && principal.role == \"role{}\" }};\n",
                n % 7
            ),
            None => format!(
                "@id(\"svc.{n}\")\nforbid (principal, action == Action::\"DELETE\", \
                 resource == Route::\"/svc/{route}/items\")\n\
                 unless {{ principal is User && principal has role && principal.role == \"admin\" }};\n"
            ),
        });
    }
    let read = |name: &str| std::fs::read_to_string(format!("{POLICY_DIR}/{name}")).unwrap();
    let pdp = CedarPdp::builder()
        .policy_id("clinic")
        .schema(read("clinic.cedarschema"))
        .entities_json(serde_json::from_str(&read("entities.json")).unwrap())
        .policy("clinic.cedar", clinic.clone())
        .policy("svc.cedar", generated.clone())
        .build()
        .unwrap();
    let whole = PolicySet::from_str(&format!("{clinic}\n{generated}")).unwrap();
    assert_eq!(pdp.policy_ids().len(), count.max(clinic_rules));
    (pdp, whole)
}

/// Mean µs per call of `raw` and `warden`, and the median of their per-round ratios, timed
/// alternately in short rounds (each side first in every other round) so that the load of a
/// shared machine falls on both alike; the median keeps a load spike in one round from
/// skewing the ratio.
fn alternate(mut raw: impl FnMut(), mut warden: impl FnMut()) -> (f64, f64, f64) {
    let (rounds, iters) = (40u32, 1_000u32);
    let time = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        for _ in 0..iters {
            f();
        }
        started.elapsed()
    };
    let mut timings = Vec::with_capacity(rounds as usize);
    for round in 0..rounds {
        timings.push(if round % 2 == 0 {
            let r = time(&mut raw);
            (r, time(&mut warden))
        } else {
            let w = time(&mut warden);
            (time(&mut raw), w)
        });
    }
    let mut ratios: Vec<f64> = timings
        .iter()
        .map(|(r, w)| w.as_secs_f64() / r.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let median = ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN);
    let per = |total: Duration| total.as_secs_f64() * 1e6 / f64::from(rounds * iters);
    let raw_total: Duration = timings.iter().map(|(r, _)| *r).sum();
    let warden_total: Duration = timings.iter().map(|(_, w)| *w).sum();
    (per(raw_total), per(warden_total), median)
}

/// `CEDAR_PDP_RULES=<rules>:<decisions>` makes the bench only load `rules` rules and make
/// `decisions` decisions of the `rules` group's request, for instruction counts under
/// valgrind (the difference between two decision counts is the cost of the decisions).
fn count_only(spec: &str) {
    let (rules_count, decisions) = spec.split_once(':').unwrap();
    let (pdp, _) = rules(rules_count.parse().unwrap());
    let request = request("/clinics/{clinic_id}/patients", json!({"clinic_id": "c1"}));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert!(runtime.block_on(pdp.decide(&request)).unwrap().allowed);
    for _ in 0..decisions.parse::<u32>().unwrap() {
        black_box(runtime.block_on(pdp.decide(&request)).unwrap());
    }
}

fn main() {
    if let Ok(spec) = std::env::var("CEDAR_PDP_RULES") {
        return count_only(&spec);
    }
    let pdp = CedarPdp::from_dir(POLICY_DIR).unwrap();
    let source = std::fs::read_to_string(format!("{POLICY_DIR}/clinic.cedar")).unwrap();
    let policies = PolicySet::from_str(&source).unwrap();
    let authorizer = Authorizer::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cases = [
        ("no_obligation", request("/clinics", json!({}))),
        (
            "two_redactions",
            request("/clinics/{clinic_id}/patients", json!({"clinic_id": "c1"})),
        ),
        (
            "deny",
            request("/clinics/{clinic_id}/patients", json!({"clinic_id": "c2"})),
        ),
    ];
    // Both sides agree before they are timed.
    for (name, request) in &cases {
        let (cedar_request, entities) = raw(request);
        let response = authorizer.is_authorized(&cedar_request, &policies, &entities);
        let decision = runtime.block_on(pdp.decide(request)).unwrap();
        assert_eq!(
            response.decision() == cedar_policy::Decision::Allow,
            decision.allowed,
            "{name}"
        );
        assert!(decision.diagnostics.is_empty(), "{name}: {decision:?}");
    }

    let mut criterion = Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut summary = Vec::new();
    for (name, request) in &cases {
        let (cedar_request, entities) = raw(request);
        let mut group = criterion.benchmark_group(format!("cedar_pdp/{name}"));
        group.bench_function("raw_cedar_is_authorized", |b| {
            b.iter(|| black_box(authorizer.is_authorized(&cedar_request, &policies, &entities)))
        });
        group.bench_function("warden_cedar_pdp", |b| {
            b.iter(|| black_box(runtime.block_on(pdp.decide(request)).unwrap()))
        });
        group.finish();

        // The bench's own timing, alternating, for the ratio line.
        let (raw_us, warden_us, ratio) = alternate(
            || {
                black_box(authorizer.is_authorized(&cedar_request, &policies, &entities));
            },
            || {
                black_box(runtime.block_on(pdp.decide(request)).unwrap());
            },
        );
        summary.push(format!(
            "cedar_pdp/{name}: raw is_authorized {raw_us:.2} µs, Warden {warden_us:.2} µs, ratio {ratio:.2} (target ≤ 1.10)"
        ));
    }

    // Every request from another subject: the request-scoped entities are built each time
    // (the entity-set cache misses). Informational: the cost of a first request.
    let distinct: Vec<AccessRequest> = (0..4096)
        .map(|i| {
            let mut r = request("/clinics/{clinic_id}/patients", json!({"clinic_id": "c1"}));
            r.subject.id = format!("nurse-{i}");
            r
        })
        .collect();
    let (cedar_request, entities) = raw(distinct.first().unwrap());
    let mut group = criterion.benchmark_group("cedar_pdp/new_subject");
    group.bench_function("raw_cedar_is_authorized", |b| {
        b.iter(|| black_box(authorizer.is_authorized(&cedar_request, &policies, &entities)))
    });
    let mut next = distinct.iter().cycle();
    group.bench_function("warden_cedar_pdp", |b| {
        b.iter(|| {
            let request = next.next().unwrap();
            black_box(runtime.block_on(pdp.decide(request)).unwrap())
        })
    });
    group.finish();
    let (raw_us, warden_us, ratio) = alternate(
        || {
            black_box(authorizer.is_authorized(&cedar_request, &policies, &entities));
        },
        || {
            let request = next.next().unwrap();
            black_box(runtime.block_on(pdp.decide(request)).unwrap());
        },
    );
    summary.push(format!(
        "cedar_pdp/new_subject: raw is_authorized {raw_us:.2} µs, Warden {warden_us:.2} µs, ratio {ratio:.2} (entity-set cache misses; no target)"
    ));

    // 60 rules beside 1,000 rules: the same request, the same package with more rules on
    // other routes. The index authorizes the request against the rules of its scope only;
    // the raw whole-set call shows what every rule costs.
    let request = request("/clinics/{clinic_id}/patients", json!({"clinic_id": "c1"}));
    let (cedar_request, entities) = raw(&request);
    let (small, small_set) = rules(60);
    let (large, large_set) = rules(1_000);
    let expected = runtime.block_on(small.decide(&request)).unwrap();
    let decision = runtime.block_on(large.decide(&request)).unwrap();
    assert!(
        decision.allowed && decision.diagnostics.is_empty(),
        "{decision:?}"
    );
    assert_eq!(decision.obligations, expected.obligations);
    let mut group = criterion.benchmark_group("cedar_pdp/rules");
    group.bench_function("warden_60", |b| {
        b.iter(|| black_box(runtime.block_on(small.decide(&request)).unwrap()))
    });
    group.bench_function("warden_1000", |b| {
        b.iter(|| black_box(runtime.block_on(large.decide(&request)).unwrap()))
    });
    group.bench_function("raw_whole_set_1000", |b| {
        b.iter(|| black_box(authorizer.is_authorized(&cedar_request, &large_set, &entities)))
    });
    group.finish();
    let (small_us, large_us, ratio) = alternate(
        || {
            black_box(runtime.block_on(small.decide(&request)).unwrap());
        },
        || {
            black_box(runtime.block_on(large.decide(&request)).unwrap());
        },
    );
    summary.push(format!(
        "cedar_pdp/rules: Warden 60 rules {small_us:.2} µs, 1,000 rules {large_us:.2} µs, ratio {ratio:.2} (target ≤ 2.00)"
    ));
    let (small_us, large_us, ratio) = alternate(
        || {
            black_box(authorizer.is_authorized(&cedar_request, &small_set, &entities));
        },
        || {
            black_box(authorizer.is_authorized(&cedar_request, &large_set, &entities));
        },
    );
    summary.push(format!(
        "cedar_pdp/rules: raw is_authorized on the whole set, 60 rules {small_us:.2} µs, 1,000 rules {large_us:.2} µs, ratio {ratio:.2} (no index; for information)"
    ));

    criterion.final_summary();
    println!();
    for line in summary {
        println!("{line}");
    }
}
