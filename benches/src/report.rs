//! Ratio tables from criterion's estimates.
//!
//! Criterion writes each benchmark's estimates to `<target>/criterion/<id>/new/estimates.json`.
//! After a bench binary has run its groups it calls [`print_ratios`] with pairs of ids; the
//! table shows both mean times and how many times faster the first is than its baseline.

use std::path::PathBuf;

/// One row of a ratio table: `subject` compared with `baseline` (criterion benchmark ids,
/// as `group/function/parameter`).
#[derive(Debug, Clone, Copy)]
pub struct Comparison<'a> {
    /// What the row is about.
    pub label: &'a str,
    /// The benchmark being judged.
    pub subject: &'a str,
    /// The benchmark it is compared with, measured in the same run.
    pub baseline: &'a str,
}

/// Where criterion keeps its results: `$CRITERION_HOME`, else `<target dir>/criterion` found
/// from the running bench binary's path (`<target>/<profile>/deps/<bench>`).
pub fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// The time per iteration criterion measured for `id` (its slope estimate, else the mean),
/// if it ran in this run.
pub fn nanos(id: &str) -> Option<f64> {
    let path = criterion_dir()?
        .join(directory_of(id))
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    // The slope (time per iteration from the linear fit) is what criterion prints as
    // `time`; flat sampling has no slope, and then the mean stands in.
    let estimate = json
        .get("slope")
        .filter(|v| !v.is_null())
        .or_else(|| json.get("mean"))?;
    estimate.get("point_estimate")?.as_f64()
}

/// Criterion's directory for a benchmark id `group/function/parameter`: a `/` inside the
/// function name (`mysql/short`) becomes `_`.
fn directory_of(id: &str) -> String {
    let parts: Vec<&str> = id.split('/').collect();
    if parts.len() <= 3 {
        return id.to_owned();
    }
    let function = parts[1..parts.len() - 1].join("_");
    format!("{}/{function}/{}", parts[0], parts[parts.len() - 1])
}

/// Prints a table: label, subject mean, baseline mean, and `baseline / subject` (how many
/// times faster the subject is; below 1.00 means slower). Rows whose benchmarks did not run
/// (filtered out on the command line) are skipped.
pub fn print_ratios(title: &str, rows: &[Comparison<'_>]) {
    println!("\n{title}");
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "comparison", "subject", "baseline", "ratio"
    );
    for row in rows {
        let (Some(subject), Some(baseline)) = (nanos(row.subject), nanos(row.baseline)) else {
            continue;
        };
        println!(
            "{:<44} {:>12} {:>12} {:>7.2}x",
            row.label,
            format_nanos(subject),
            format_nanos(baseline),
            baseline / subject
        );
    }
}

/// A time in nanoseconds, with a unit that keeps three significant digits.
pub fn format_nanos(nanos: f64) -> String {
    if nanos < 1e3 {
        format!("{nanos:.1} ns")
    } else if nanos < 1e6 {
        format!("{:.2} µs", nanos / 1e3)
    } else if nanos < 1e9 {
        format!("{:.2} ms", nanos / 1e6)
    } else {
        format!("{:.2} s", nanos / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_function_names_map_to_criterion_directories() {
        assert_eq!(directory_of("buf/pool/1024"), "buf/pool/1024");
        assert_eq!(
            directory_of("select1/mysql/short/c1"),
            "select1/mysql_short/c1"
        );
    }

    #[test]
    fn durations_are_formatted_with_their_unit() {
        assert_eq!(format_nanos(24.93), "24.9 ns");
        assert_eq!(format_nanos(2_500.0), "2.50 µs");
        assert_eq!(format_nanos(2_500_000.0), "2.50 ms");
        assert_eq!(format_nanos(2_500_000_000.0), "2.50 s");
    }
}
