//! A filter's key decodes back to the filter resolved for the subject: two filters have the
//! same key only when they resolve to the same filter.

use proptest::prelude::*;
use serde_json::json;
use warden_decision::{Literal, Operand, Predicate, Subject};

use super::predicate;
use crate::filter::resolve;

/// Reads back what [`predicate`] wrote.
struct Reader<'a> {
    rest: &'a str,
}

impl Reader<'_> {
    fn tag(&mut self) -> char {
        let c = self.rest.chars().next().unwrap();
        self.rest = &self.rest[c.len_utf8()..];
        c
    }

    fn peek(&self) -> char {
        self.rest.chars().next().unwrap()
    }

    fn until(&mut self, end: char) -> &str {
        let at = self.rest.find(end).unwrap();
        let (head, tail) = self.rest.split_at(at);
        self.rest = &tail[1..];
        head
    }

    fn text(&mut self) -> String {
        let len: usize = self.until(':').parse().unwrap();
        let (s, tail) = self.rest.split_at(len);
        self.rest = tail;
        s.to_owned()
    }

    fn operand(&mut self) -> Operand {
        match self.tag() {
            'c' => Operand::Column(self.text()),
            'n' => Operand::Value(Literal::Null),
            't' => Operand::Value(Literal::Bool(true)),
            'f' => Operand::Value(Literal::Bool(false)),
            'i' => Operand::Value(Literal::Int(self.until(';').parse().unwrap())),
            'd' => Operand::Value(Literal::Float(f64::from_bits(
                u64::from_str_radix(self.until(';'), 16).unwrap(),
            ))),
            's' => Operand::Value(Literal::String(self.text())),
            other => panic!("no operand begins with {other:?}"),
        }
    }

    fn list<T>(&mut self, item: impl Fn(&mut Self) -> T) -> Vec<T> {
        let mut items = Vec::new();
        while self.peek() != ')' {
            items.push(item(self));
        }
        self.tag();
        items
    }

    fn predicate(&mut self) -> Predicate {
        let tag = self.tag();
        let comparison: Option<fn(Operand, Operand) -> Predicate> = match tag {
            '=' => Some(Predicate::Eq),
            '!' => Some(Predicate::Ne),
            '<' => Some(Predicate::Lt),
            'l' => Some(Predicate::Le),
            '>' => Some(Predicate::Gt),
            'g' => Some(Predicate::Ge),
            '~' => Some(Predicate::Like),
            _ => None,
        };
        if let Some(make) = comparison {
            let a = self.operand();
            return make(a, self.operand());
        }
        match tag {
            '&' => Predicate::And(self.list(Self::predicate)),
            '|' => Predicate::Or(self.list(Self::predicate)),
            'N' => Predicate::Not(Box::new(self.predicate())),
            'T' => Predicate::Const(true),
            'F' => Predicate::Const(false),
            '0' => Predicate::IsNull(self.operand()),
            'I' => {
                let a = self.operand();
                Predicate::In(a, self.list(Self::operand))
            }
            other => panic!("no predicate begins with {other:?}"),
        }
    }
}

fn decode(key: &str) -> Predicate {
    let mut reader = Reader { rest: key };
    let p = reader.predicate();
    assert!(reader.rest.is_empty(), "left over: {:?}", reader.rest);
    p
}

fn subject() -> Subject {
    Subject::user("nina")
        .with_property("clinic", "c1")
        .with_property("clinics", json!(["c1", "c2:x", 3, 1.5, null, true]))
        .with_property("level", 3)
        .with_property("ratio", 0.25)
        .with_property("big", json!(u64::MAX))
        .with_property("on", false)
        .with_property("none", json!(null))
        .with_property("org", json!({"id": 7, "name": "north)"}))
        .with_property("empty", json!([]))
}

/// Paths that resolve to each kind of value, and some that do not.
const PATHS: [&str; 14] = [
    "id",
    "type",
    "clinic",
    "properties.clinic",
    "clinics",
    "level",
    "ratio",
    "big",
    "on",
    "none",
    "org",
    "org.id",
    "org.name",
    "missing",
];

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{1,6}",
        // Strings that look like the encoding's own tags and lengths.
        Just("3:abc".to_owned()),
        Just(")".to_owned()),
        Just("s1:".to_owned()),
        "[a-z:;().0-9&|]{0,8}",
        Just("é€".to_owned()),
    ]
    .boxed()
}

fn operand() -> BoxedStrategy<Operand> {
    prop_oneof![
        text().prop_map(Operand::Column),
        Just(Operand::Value(Literal::Null)),
        any::<bool>().prop_map(|b| Operand::Value(Literal::Bool(b))),
        any::<i64>().prop_map(|i| Operand::Value(Literal::Int(i))),
        prop_oneof![Just(1.0), Just(-0.0), Just(0.25), any::<f64>()]
            .prop_filter("comparable", |f| !f.is_nan())
            .prop_map(|f| Operand::Value(Literal::Float(f))),
        text().prop_map(|s| Operand::Value(Literal::String(s))),
        proptest::sample::select(&PATHS[..]).prop_map(|p| Operand::Subject(p.to_owned())),
    ]
    .boxed()
}

fn predicate_strategy() -> impl Strategy<Value = Predicate> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Predicate::Const),
        (operand(), operand()).prop_map(|(a, b)| Predicate::Eq(a, b)),
        (operand(), operand()).prop_map(|(a, b)| Predicate::Ne(a, b)),
        (operand(), operand()).prop_map(|(a, b)| Predicate::Lt(a, b)),
        (operand(), operand()).prop_map(|(a, b)| Predicate::Le(a, b)),
        (operand(), operand()).prop_map(|(a, b)| Predicate::Gt(a, b)),
        (operand(), operand()).prop_map(|(a, b)| Predicate::Ge(a, b)),
        (operand(), operand()).prop_map(|(a, b)| Predicate::Like(a, b)),
        operand().prop_map(Predicate::IsNull),
        (operand(), proptest::collection::vec(operand(), 0..4))
            .prop_map(|(a, list)| Predicate::In(a, list)),
    ]
    .boxed();
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Predicate::And),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Predicate::Or),
            inner.prop_map(|p| Predicate::Not(Box::new(p))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The key of a filter is the key of the filter resolved for the subject, and it decodes
    /// to that resolved filter; where resolving refuses, so does the key.
    #[test]
    fn a_filter_key_decodes_to_the_resolved_filter(p in predicate_strategy()) {
        let subject = subject();
        let mut key = String::new();
        let written = predicate(&mut key, &p, &subject);
        match resolve(&p, &subject) {
            Ok(resolved) => {
                prop_assert!(written.is_ok());
                prop_assert_eq!(decode(&key), resolved.clone());
                let mut again = String::new();
                predicate(&mut again, &resolved, &Subject::user("other")).unwrap();
                prop_assert_eq!(again, key);
            }
            Err(reason) => prop_assert_eq!(written.unwrap_err(), reason),
        }
    }
}

#[test]
fn a_subject_attribute_and_the_literal_it_holds_have_one_key() {
    let subject = subject();
    let key = |p: &Predicate| {
        let mut k = String::new();
        predicate(&mut k, p, &subject).unwrap();
        k
    };
    let by_subject = Predicate::Eq(
        Operand::column("clinic_id"),
        Operand::Subject("clinic".into()),
    );
    let by_value = Predicate::Eq(Operand::column("clinic_id"), Operand::string("c1"));
    let other = Predicate::Eq(Operand::column("clinic_id"), Operand::string("c2"));
    assert_eq!(key(&by_subject), key(&by_value));
    assert_ne!(key(&by_subject), key(&other));
    // A list attribute is its elements, in order.
    let listed = Predicate::In(
        Operand::column("clinic_id"),
        vec![
            Operand::Subject("org.id".into()),
            Operand::Subject("clinics".into()),
        ],
    );
    assert_eq!(decode(&key(&listed)), resolve(&listed, &subject).unwrap());
}
