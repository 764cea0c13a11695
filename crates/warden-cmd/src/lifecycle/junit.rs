//! JUnit XML for `warden test --format junit`: one test suite per package, one test case per
//! case, a package that does not load as an error.

use std::fmt::Write as _;

use super::test::PackageRun;

/// The report.
pub(crate) fn report(runs: &[PackageRun]) -> String {
    let tests: usize = runs.iter().map(|r| r.results.len()).sum();
    let failures: usize = runs.iter().map(PackageRun::failed).sum();
    let errors = runs.iter().filter(|r| r.error.is_some()).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"warden test\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\">"
    );
    for run in runs {
        let name = run
            .loaded
            .as_ref()
            .map_or_else(|| run.found.display(), |l| l.revision.id.clone());
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" package=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\">",
            escape(&name),
            escape(&run.found.display()),
            run.results.len(),
            run.failed(),
            usize::from(run.error.is_some())
        );
        if let Some(loaded) = &run.loaded {
            let _ = writeln!(
                out,
                "    <properties><property name=\"revision\" value=\"{}\"/></properties>",
                escape(&loaded.revision.revision)
            );
        }
        for result in &run.results {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\"",
                escape(&name),
                escape(&result.case.name),
                escape(&result.case.file)
            );
            if result.diff.is_empty() {
                out.push_str("/>\n");
            } else {
                let first = result.diff.first().map_or("", String::as_str);
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    escape(first),
                    escape(&result.diff.join("\n"))
                );
            }
        }
        if let Some(error) = &run.error {
            let _ = writeln!(
                out,
                "    <testcase classname=\"{}\" name=\"load\">\n      <error message=\"{}\"/>\n    </testcase>",
                escape(&name),
                escape(error)
            );
        }
        if let Some(coverage) = &run.coverage {
            let _ = writeln!(
                out,
                "    <system-out>coverage {}</system-out>",
                escape(&coverage.summary())
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// XML text and attribute escaping; characters XML 1.0 cannot hold are dropped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup_and_drops_control_characters() {
        assert_eq!(escape("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
