//! Every `{{#include}}` of the book points at a file (and anchor) that exists, so the book only
//! shows code that compiles with the workspace.

use std::fs;

use warden_tests::root;

#[test]
fn book_includes_resolve() {
    let src = root().join("book/src");
    let summary = fs::read_to_string(src.join("SUMMARY.md")).unwrap();
    let mut checked = 0;
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("md") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name != "SUMMARY.md" {
            assert!(
                summary.contains(&format!("({name})")),
                "{name} is not in SUMMARY.md"
            );
        }
        let text = fs::read_to_string(&path).unwrap();
        for (_, rest) in text
            .match_indices("{{#include ")
            .map(|(i, _)| text.split_at(i))
        {
            let directive = &rest["{{#include ".len()..rest.find("}}").unwrap()];
            let (file, anchor) = match directive.split_once(':') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (directive, None),
            };
            let target = src.join(file);
            let included = fs::read_to_string(&target)
                .unwrap_or_else(|e| panic!("{name}: cannot include {}: {e}", target.display()));
            if let Some(anchor) = anchor {
                assert!(
                    included.contains(&format!("ANCHOR: {anchor}"))
                        && included.contains(&format!("ANCHOR_END: {anchor}")),
                    "{name}: anchor `{anchor}` missing in {file}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} includes found");
}
