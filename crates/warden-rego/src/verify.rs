//! What regorus' VM answers as *undefined* where the interpreter raises an error, and how a
//! decision is kept from resting on it.
//!
//! Two complete rules (or function definitions) that produce different values, or one that
//! produces several, are a conflict error in OPA and in regorus' interpreter. The VM instead
//! drops the conflicting rule to undefined, and undefined is not harmless: the entrypoint becomes
//! "not applicable" (which a first-applicable combination skips), and `not r` of a conflicting
//! `r` is *true*. A builtin or arithmetic error (`to_number("x")`, `1 / 0`) is an undefined
//! expression in the VM (and in OPA without `--strict-builtin-errors`), so `not` flips it too.
//! Warden treats both as the interpreter does, as policy errors:
//!
//! - at load, the program is searched for what could fail that way: a complete rule or
//!   function with two or more definitions whose values are not one constant, a definition
//!   whose body iterates, a builtin call or an arithmetic operation;
//! - when there is one, every VM answer that is not a plain deny (a permit, an undefined, or
//!   anything to be validated) is confirmed by the interpreter. An error there, or a different
//!   answer, makes the decision a policy error: a deny with a diagnostic.
//!
//! A policy without any (the clinic example: rules that all produce `true`, comparisons and
//! membership) pays nothing; one with them pays an interpreter run on the answers that could
//! permit, never on a plain deny.
//!
//! ```
//! use warden_decision::{AccessRequest, Action, Resource, Subject};
//! use warden_rego::RegoPdp;
//!
//! let pdp = RegoPdp::builder()
//!     .policy("p.rego", r#"
//!         package warden
//!         role := "admin" if input.subject.id == "a"
//!         role := "guest" if input.action.name == "GET"
//!         decision if not role == "guest"
//!     "#)
//!     .build()
//!     .unwrap();
//! let request = AccessRequest::new(Subject::user("a"), Action::new("GET"), Resource::new("route", "/"));
//! assert!(pdp.evaluate_raw(&request).is_err(), "a conflict, not a permit");
//! ```

use regorus::rvm::program::RuleType;
use regorus::rvm::{Instruction, Program};

/// Whether the entrypoint's program (compiled again from `engine`, at load) has rules that could
/// conflict or operations that could fail. A program that does not compile here counts as
/// having them.
pub(crate) fn entrypoint_may_fail(engine: &regorus::Engine, entrypoint: &str) -> bool {
    let mut engine = engine.clone();
    let rule: regorus::Rc<str> = regorus::Rc::from(entrypoint);
    let Ok(policy) = engine.compile_with_entrypoint(&rule) else {
        return true;
    };
    regorus::languages::rego::compiler::Compiler::compile_from_policy(&policy, &[entrypoint])
        .map_or(true, |program| {
            may_conflict(&program) || may_raise(&program)
        })
}

/// Whether any rule of `program` could produce conflicting values, which the VM would answer as
/// undefined.
pub(crate) fn may_conflict(program: &Program) -> bool {
    program.rule_infos.iter().any(|rule| {
        let complete = matches!(rule.rule_type, RuleType::Complete) || rule.function_info.is_some();
        if !complete {
            return false;
        }
        if rule.definitions.len() >= 2 && !rule.early_exit_on_first_success {
            return true;
        }
        rule.definitions
            .iter()
            .flatten()
            .any(|&entry| body_iterates(program, entry))
    })
}

/// Whether `program` calls a builtin or does arithmetic: the VM answers their errors as
/// undefined.
fn may_raise(program: &Program) -> bool {
    program.instructions.iter().any(|instruction| {
        matches!(
            instruction,
            Instruction::BuiltinCall { .. }
                | Instruction::Add { .. }
                | Instruction::Sub { .. }
                | Instruction::Mul { .. }
                | Instruction::Div { .. }
                | Instruction::Mod { .. }
        )
    })
}

/// Whether the body starting at `entry` holds a loop (up to the end of the rule); a body whose
/// end cannot be found counts as iterating.
fn body_iterates(program: &Program, entry: u32) -> bool {
    let Ok(start) = usize::try_from(entry) else {
        return true;
    };
    for instruction in program.instructions.iter().skip(start) {
        match instruction {
            Instruction::LoopStart { .. } => return true,
            Instruction::RuleReturn {} | Instruction::Halt {} => return false,
            _ => {}
        }
    }
    true
}

/// Whether the entrypoint's value is a plain deny (`false`, or an object whose `allow` is
/// `false`): a conflict the VM hid could only have turned it into an error, a deny as well.
pub(crate) fn plain_deny(value: &regorus::Value) -> bool {
    match value {
        regorus::Value::Bool(false) => true,
        regorus::Value::Object(members) => {
            members.get(&regorus::Value::from("allow")) == Some(&regorus::Value::Bool(false))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use warden_decision::{
        AccessRequest, Action, Combined, Combining, ErrorClass, Pdp, Resource, Subject,
    };

    use crate::{Evaluator, RegoPdp};

    fn request() -> AccessRequest {
        AccessRequest::new(
            Subject::user("a"),
            Action::new("GET"),
            Resource::new("route", "/"),
        )
    }

    fn pdps(rego: &str) -> [RegoPdp; 2] {
        [Evaluator::Vm, Evaluator::Interpreter].map(|evaluator| {
            RegoPdp::builder()
                .policy("p.rego", rego)
                .evaluator(evaluator)
                .build()
                .unwrap()
        })
    }

    /// Policies that are an evaluation error in OPA for the request of [`request`].
    const ERRORS: [(&str, &str); 9] = [
        (
            "two complete decisions",
            r#"package warden
            decision := {"allow": true} if input.subject.id == "a"
            decision := {"allow": false} if input.action.name == "GET""#,
        ),
        (
            "two boolean decisions",
            r#"package warden
            decision := true if input.subject.id == "a"
            decision := false if input.action.name == "GET""#,
        ),
        (
            "a conflicting helper under not",
            r#"package warden
            role := "admin" if input.subject.id == "a"
            role := "guest" if input.action.name == "GET"
            decision if not role == "guest""#,
        ),
        (
            "a complete rule with several outputs",
            r#"package warden
            r := x if { some x in [1, 2] }
            decision if not r == 3"#,
        ),
        (
            "a function with several outputs",
            r#"package warden
            f(a) := x if { some x in [a, 2] }
            decision if not f(1) == 3"#,
        ),
        (
            "a function with conflicting definitions",
            r#"package warden
            f(x) := 1 if x == 1
            f(x) := 2 if x > 0
            decision if not f(1) == 3"#,
        ),
        (
            "a builtin error under not",
            r#"package warden
            decision if not to_number("abc") == 1"#,
        ),
        (
            "a division by zero under not",
            r#"package warden
            decision if not 1 / 0 == 1"#,
        ),
        (
            "a conflict behind a default",
            r#"package warden
            default decision := false
            allow := true if input.subject.id == "a"
            allow := false if input.action.name == "GET"
            decision if not allow == false"#,
        ),
    ];

    #[tokio::test]
    async fn conflicts_and_evaluation_errors_are_policy_errors_never_undefined() {
        for (name, rego) in ERRORS {
            for pdp in pdps(rego) {
                let d = pdp.decide(&request()).await.unwrap();
                assert!(!d.allowed, "{name}: {pdp:?} permitted");
                assert!(!d.not_applicable, "{name}: {pdp:?} not applicable");
                assert_eq!(
                    d.error_class(),
                    Some(ErrorClass::PolicyError),
                    "{name}: {pdp:?} {:?}",
                    d.diagnostics
                );
            }
        }
    }

    #[tokio::test]
    async fn a_conflicting_policy_never_lets_the_next_pdp_permit() {
        let permit = RegoPdp::builder()
            .policy("p.rego", "package warden\ndecision := true")
            .build()
            .unwrap();
        for (name, rego) in ERRORS {
            for pdp in pdps(rego) {
                for combining in [Combining::FirstApplicable, Combining::DenyOverrides] {
                    let both = Combined::new(combining)
                        .with(Arc::new(pdp.builder.clone().build().unwrap()))
                        .with(Arc::new(permit.builder.clone().build().unwrap()));
                    let d = both.decide(&request()).await;
                    assert!(
                        d.as_ref().is_err() || d.as_ref().is_ok_and(|d| !d.allowed),
                        "{name} {combining}: {d:?}"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn rules_that_agree_are_not_conflicts() {
        let agreeing = r#"package warden
            default decision := false
            decision if input.subject.id == "a"
            decision if input.action.name == "GET"
            role := "admin" if input.subject.id == "a"
            role := "admin" if input.action.name == "GET"
            n := count([x | some x in [1, 2]])
            "#;
        for pdp in pdps(agreeing) {
            let d = pdp.decide(&request()).await.unwrap();
            assert!(d.allowed && d.error_class().is_none(), "{pdp:?}: {d:?}");
        }
    }

    #[test]
    fn the_clinic_policy_needs_no_confirmation() {
        // The cost guarantee of the clinic bench: its rules cannot conflict, so the VM's answer
        // stands alone.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/clinic");
        let pdp = RegoPdp::from_dir(dir).unwrap();
        assert!(!pdp.state.load().confirm);
        let conflicting = pdps(ERRORS[2].1);
        assert!(conflicting[0].state.load().confirm);
    }
}
