//! Warden's Rego PDP beside a raw regorus VM call on the same policy and input.
//!
//! DESIGN §9 target: a `RegoPdp::decide` costs at most 1.10 × a raw regorus VM evaluation of
//! the same entrypoint with the same input. The floor keeps one prepared VM and a prebuilt
//! input value, as an application calling regorus directly would; Warden builds the input from
//! the access request, takes a VM from its pool and turns the result into a validated decision.
//!
//! Run: `cargo bench -p warden-benches --bench rego_pdp -- --noplot`.
#![expect(clippy::unwrap_used, reason = "benchmark setup fails loudly")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use regorus::rvm::RegoVM;
use serde_json::json;
use warden_decision::{AccessRequest, Pdp};
use warden_rego::RegoPdp;

const POLICY_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/clinic");
const ENTRYPOINT: &str = "data.clinic.decision";

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

/// A raw VM on the clinic policy: compiled once, input prebuilt.
fn raw_vm() -> RegoVM {
    let mut engine = regorus::Engine::new();
    let source = std::fs::read_to_string(format!("{POLICY_DIR}/clinic.rego")).unwrap();
    engine.add_policy("clinic.rego".into(), source).unwrap();
    let data = std::fs::read_to_string(format!("{POLICY_DIR}/data.json")).unwrap();
    engine
        .add_data(regorus::Value::from_json_str(&data).unwrap())
        .unwrap();
    let rule: regorus::Rc<str> = regorus::Rc::from(ENTRYPOINT);
    let compiled = engine.compile_with_entrypoint(&rule).unwrap();
    let program =
        regorus::languages::rego::compiler::Compiler::compile_from_policy(&compiled, &[ENTRYPOINT])
            .unwrap();
    let mut vm = RegoVM::new_with_policy(compiled);
    vm.load_program(program);
    vm.set_data(engine.get_data()).unwrap();
    vm
}

/// `REGO_PDP_COUNT=<raw|warden|raw_varied|warden_varied>:<decisions>` makes the bench only make
/// `decisions` decisions of the `two_redactions` request on one side, for instruction counts
/// under valgrind (the difference between two decision counts is the cost of the decisions).
/// The `_varied` sides alternate two requests that differ in every part (the subject's id, an
/// action property, a query parameter, the time), so
/// no part of the input is the last one's: the cost when nothing can be reused.
fn count_only(spec: &str) {
    let (side, decisions) = spec.split_once(':').unwrap();
    let decisions: u32 = decisions.parse().unwrap();
    let request = request("/clinics/{clinic_id}/patients", json!({"clinic_id": "c1"}));
    let mut other = request.clone();
    other.subject.id = "nora".into();
    other
        .resource
        .properties
        .insert("query".into(), json!({"page": "2"}));
    other
        .context
        .insert("time".into(), json!("2026-11-30T10:00:01Z"));
    other.action.properties.insert("m".into(), json!(1));
    let varied = side.ends_with("_varied");
    let pick = |i: u32| {
        if varied && i % 2 == 1 {
            &other
        } else {
            &request
        }
    };
    if side.starts_with("raw") {
        let mut vm = raw_vm();
        let inputs =
            [&request, &other].map(|r| regorus::Value::from(serde_json::to_value(r).unwrap()));
        for i in 0..decisions {
            let input = if varied && i % 2 == 1 {
                &inputs[1]
            } else {
                &inputs[0]
            };
            vm.set_input(input.clone());
            black_box(vm.execute_entry_point_by_name(ENTRYPOINT).unwrap());
        }
        return;
    }
    let pdp = RegoPdp::from_dir(POLICY_DIR).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for i in 0..decisions {
        black_box(runtime.block_on(pdp.decide(pick(i))).unwrap());
    }
}

fn main() {
    if let Ok(spec) = std::env::var("REGO_PDP_COUNT") {
        return count_only(&spec);
    }
    let pdp = RegoPdp::from_dir(POLICY_DIR).unwrap();
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
    let mut vm = raw_vm();
    // Both sides agree before they are timed.
    for (name, request) in &cases {
        let input = regorus::Value::from(serde_json::to_value(request).unwrap());
        vm.set_input(input);
        let raw = vm.execute_entry_point_by_name(ENTRYPOINT).unwrap();
        let decision = runtime.block_on(pdp.decide(request)).unwrap();
        assert_eq!(
            raw["allow"],
            regorus::Value::from(decision.allowed),
            "{name}"
        );
    }

    let mut criterion = Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut summary = Vec::new();
    for (name, request) in &cases {
        let input = regorus::Value::from(serde_json::to_value(request).unwrap());
        let mut group = criterion.benchmark_group(format!("rego_pdp/{name}"));
        group.bench_function("raw_regorus_vm", |b| {
            b.iter(|| {
                vm.set_input(input.clone());
                black_box(vm.execute_entry_point_by_name(ENTRYPOINT).unwrap())
            })
        });
        group.bench_function("warden_rego_pdp", |b| {
            b.iter(|| black_box(runtime.block_on(pdp.decide(request)).unwrap()))
        });
        group.finish();

        // The bench's own timing, alternating, for the ratio line.
        let iters = 20_000;
        let (mut raw_total, mut warden_total) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..4 {
            let started = Instant::now();
            for _ in 0..iters {
                vm.set_input(input.clone());
                black_box(vm.execute_entry_point_by_name(ENTRYPOINT).unwrap());
            }
            raw_total += started.elapsed();
            let started = Instant::now();
            for _ in 0..iters {
                black_box(runtime.block_on(pdp.decide(request)).unwrap());
            }
            warden_total += started.elapsed();
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(iters * 4);
        summary.push(format!(
            "rego_pdp/{name}: raw VM {:.2} µs, Warden {:.2} µs, ratio {:.2} (target ≤ 1.10)",
            per(raw_total),
            per(warden_total),
            per(warden_total) / per(raw_total)
        ));
    }
    criterion.final_summary();
    println!();
    for line in summary {
        println!("{line}");
    }
}
