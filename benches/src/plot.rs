//! Plots of the push scale results for `docs/benchmarks.md`: small SVG bar charts written
//! from the JSON files `longlink-bench push … --out` leaves, with published peer figures
//! beside ours and the aim drawn as a line.
//!
//! Hand-written SVG (a few rectangles and labels) rather than a plotting crate: it keeps the
//! benches' cold build small and the charts diffable.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

/// One bar: label, value, and whether it is ours (drawn darker) or a published peer's.
#[derive(Debug, Clone)]
pub struct Bar {
    /// What it measures.
    pub label: String,
    /// Its value in the chart's unit.
    pub value: f64,
    /// Ours (measured here) rather than a published figure.
    pub ours: bool,
}

/// A horizontal bar chart as SVG; `aim` draws a dashed line at that value.
pub fn bar_chart(title: &str, unit: &str, bars: &[Bar], aim: Option<(f64, &str)>) -> String {
    let (left, width, row, top) = (260.0, 420.0, 26.0, 40.0);
    let max = bars
        .iter()
        .map(|b| b.value)
        .chain(aim.map(|a| a.0))
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let height = top + row * bars.len() as f64 + 30.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">"#,
        w = left + width + 120.0
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (i, bar) in bars.iter().enumerate() {
        let y = top + row * i as f64;
        let w = (bar.value / max * width).max(1.0);
        let fill = if bar.ours { "#1f5fa8" } else { "#b9b9b9" };
        let _ = writeln!(
            svg,
            r#"<text x="{x}" y="{ty}" text-anchor="end">{label}</text><rect x="{left}" y="{y}" width="{w:.1}" height="{h}" fill="{fill}"/><text x="{vx:.1}" y="{ty}">{value} {unit}</text>"#,
            x = left - 8.0,
            ty = y + 14.0,
            label = escape(&bar.label),
            h = row - 8.0,
            vx = left + w + 6.0,
            value = human(bar.value),
            unit = escape(unit),
        );
    }
    if let Some((value, label)) = aim {
        let x = left + value / max * width;
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{y1}" x2="{x:.1}" y2="{y2}" stroke="#c0392b" stroke-dasharray="4 3"/><text x="{x:.1}" y="{ty}" fill="#c0392b" text-anchor="middle">{label}</text>"##,
            y1 = top - 6.0,
            y2 = height - 24.0,
            ty = height - 10.0,
            label = escape(label),
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 100.0 {
        // Thousands grouped: 30,720.
        let digits = format!("{v:.0}");
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn read(dir: &Path, name: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    serde_json::from_str(&text).ok()
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn ours(label: &str, value: f64) -> Bar {
    Bar {
        label: label.into(),
        value,
        ours: true,
    }
}

fn peer(label: &str, value: f64) -> Bar {
    Bar {
        label: label.into(),
        value,
        ours: false,
    }
}

/// The results whose file name starts with `prefix`, by name (the rest of the name is the
/// label), sorted.
fn named(dir: &Path, prefix: &str) -> std::io::Result<Vec<(String, Value)>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".json"))
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .filter_map(|n| {
            let v = read(dir, &n)?;
            let label = n
                .trim_start_matches(prefix)
                .trim_end_matches(".json")
                .to_owned();
            Some((label, v))
        })
        .collect())
}

/// Writes every chart whose results are in `results` into `out`; returns the files written.
///
/// Reads `connect-*.json` (memory per connection and after close), `broadcast-ws.json`,
/// `broadcast-tcp.json`, `broadcast-burst.json` (deliveries/s) and `unicast-*.json`
/// (latency at each rate); a missing file leaves its bars out.
pub fn write_all(results: &Path, out: &Path) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    let mut save = |name: &str, svg: String| -> std::io::Result<()> {
        std::fs::write(out.join(name), svg)?;
        written.push(name.to_owned());
        Ok(())
    };

    let mut memory = vec![
        peer("Centrifugo (published)", 30.0 * 1024.0),
        peer("360 push (published, per user)", 25.0 * 1024.0),
        peer("goim (published)", 14.0 * 1024.0),
        peer("Mail.Ru gateway (published)", 8.0 * 1024.0),
    ];
    let connects = named(results, "connect-")?;
    for (what, v) in &connects {
        memory.push(ours(
            &format!("longlink, {what}"),
            num(v, "rss_bytes_per_conn"),
        ));
    }
    save(
        "push-memory-per-connection.svg",
        bar_chart(
            "User-space memory per idle connection",
            "B",
            &memory,
            Some((4096.0, "aim 4 KiB")),
        ),
    )?;

    let mut rss = Vec::new();
    for (what, v) in &connects {
        let mib = |k: &str| num(v, k) / 1048576.0;
        rss.push(ours(&format!("{what}: before"), mib("rss_before")));
        rss.push(ours(
            &format!("{what}: {} connected", num(v, "connected")),
            mib("rss_connected"),
        ));
        rss.push(ours(
            &format!("{what}: after close"),
            mib("rss_after_close"),
        ));
    }
    if !rss.is_empty() {
        save(
            "push-memory-after-close.svg",
            bar_chart(
                "Rooms' RSS before, connected, after close",
                "MiB",
                &rss,
                None,
            ),
        )?;
    }

    let mut deliveries = vec![peer("goim, per busy core (published)", 1.5e6)];
    for (file, label) in [
        ("broadcast-ws.json", "WebSocket, one per write"),
        ("broadcast-tcp.json", "raw TCP, one per write"),
        ("broadcast-burst.json", "raw TCP, burst (batched)"),
    ] {
        if let Some(v) = read(results, file) {
            deliveries.push(ours(label, num(&v, "deliveries_per_sec")));
            if file == "broadcast-burst.json" {
                deliveries.push(ours(
                    "raw TCP, burst, per room CPU-second",
                    num(&v, "deliveries_per_room_cpu_sec"),
                ));
            }
        }
    }
    save(
        "push-broadcast.svg",
        bar_chart(
            "Broadcast deliveries per second (100k connections)",
            "/s",
            &deliveries,
            Some((1e6, "aim 1M/s")),
        ),
    )?;

    let mut latency = Vec::new();
    for (what, v) in named(results, "unicast-")? {
        let rate = num(&v, "target_rate");
        latency.push(ours(&format!("{what} @ {rate}/s: p50"), num(&v, "p50_ms")));
        latency.push(ours(&format!("{what} @ {rate}/s: p99"), num(&v, "p99_ms")));
    }
    if !latency.is_empty() {
        save(
            "push-unicast-latency.svg",
            bar_chart(
                "Unicast API → client latency",
                "ms",
                &latency,
                Some((10.0, "aim p99 10 ms")),
            ),
        )?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_a_bar_per_value_scaled_to_the_largest_and_the_aim_line() {
        let svg = bar_chart(
            "t <1>",
            "B",
            &[ours("a", 100.0), peer("b", 50.0)],
            Some((200.0, "aim")),
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<rect x=").count(), 2);
        // The aim (200) is the largest: a is half the width (210 of 420), b a quarter.
        assert!(svg.contains(r#"width="210.0""#), "{svg}");
        assert!(svg.contains(r#"width="105.0""#), "{svg}");
        assert!(svg.contains("t &lt;1&gt;"));
        assert!(svg.contains("stroke-dasharray"));
        assert_eq!(human(30_720.0), "30,720");
        assert_eq!(human(1_500_000.0), "1.50M");
        assert_eq!(human(8.83), "8.83");
    }
}
