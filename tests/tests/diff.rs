//! `spawnprof diff` of two real recordings: the same 20-spawn bash loop,
//! plain and under a 5,000-variable environment. The exec that copies the
//! environment gets slower beyond the noise; the table says so with the
//! medians and an interval, marks the rest within noise, and diff.svg
//! colours the frames the same way.
use spawnprof_tests::{diff, out_dir, record};

const LOOP: &str = "i=0; while [ $i -lt 20 ]; do /bin/true; i=$((i+1)); done";

#[test]
fn a_bigger_environment_makes_exec_slower_and_the_rest_is_noise() {
    let a = record("diff-a", &["--sample-hz", "0", "--", "bash", "-c", LOOP]);
    let vars: Vec<String> = (0..5_000)
        .map(|i| format!("SPAWNPROF_DIFF_{i}=xxxxxxxxxx"))
        .collect();
    let mut args = vec!["--sample-hz", "0", "--", "env"];
    args.extend(vars.iter().map(String::as_str));
    args.extend(["bash", "-c", LOOP]);
    let b = record("diff-b", &args);
    for run in [&a, &b] {
        assert!(run.output.status.success(), "{}", run.stderr());
    }
    let out_path = out_dir("diff-out");
    let table = diff(&a.dir, &b.dir, &out_path);
    let row = |stage: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(stage))
            .unwrap_or_else(|| panic!("no {stage} row:\n{table}"))
            .to_string()
    };
    for column in [
        "A p50",
        "B p50",
        "p50 change (99% interval)",
        "A p90",
        "B p90",
    ] {
        assert!(table.contains(column), "{column}:\n{table}");
    }
    let load = row("exec_load");
    assert!(load.contains("slower (p < 0.001)"), "{load}");
    assert!(
        load.contains(" (+"),
        "the interval of a slower median is above zero: {load}"
    );
    assert!(table.contains("within noise"), "{table}");
    let svg = std::fs::read_to_string(out_path.join("diff.svg")).unwrap();
    assert!(svg.contains("white: within noise"), "the colour key");
    let fill = frame_fill(&svg, "exec_load").expect("an exec_load frame");
    assert!(
        fill.starts_with("rgb(255,"),
        "exec_load is red (slower): {fill}"
    );
}

/// The `fill` of the first frame named `name` in a flamegraph.
fn frame_fill(svg: &str, name: &str) -> Option<String> {
    let at = svg.find(&format!("<title>{name} ("))?;
    let rect = &svg[at..];
    let fill = rect.find("fill=\"")? + 6;
    Some(rect[fill..fill + rect[fill..].find('"')?].to_string())
}
