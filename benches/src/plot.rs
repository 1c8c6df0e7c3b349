//! Plots of the push scale results for `docs/benchmarks.md`: SVG bar charts written from the
//! JSON files `longlink-bench push … --out` leaves, with published peer figures beside ours
//! and the aim drawn as a line.
//!
//! Drawn with `plotters`' SVG backend only (no bitmap backend, no font crate): text goes out
//! as `<text>` elements that the viewer renders, so the cold build gains three small crates
//! and the charts stay plain, diffable SVG.

use std::io;
use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
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

const OURS: RGBColor = RGBColor(0x1f, 0x5f, 0xa8);
const PEER: RGBColor = RGBColor(0xb9, 0xb9, 0xb9);
const AIM: RGBColor = RGBColor(0xc0, 0x39, 0x2b);
const GRID: RGBColor = RGBColor(0xe4, 0xe4, 0xe4);
/// Pixels per bar's row.
const ROW: u32 = 26;
/// Pixels left blank above and below a bar within its row.
const GAP: u32 = 4;
/// plotters' SVG backend writes a font size of `size / 1.24`: these come out as 12 and 14 px.
const TEXT: f64 = 15.0;
const TITLE: f64 = 17.5;

/// A horizontal bar chart as SVG, the first bar on top, each labelled with its value and
/// `unit`; `aim` draws a dashed line at that value, labelled. A legend tells ours from the
/// published figures when the chart holds both.
///
/// ```
/// use longlink_benches::plot::{Bar, bar_chart};
///
/// let bars = [Bar { label: "longlink".into(), value: 3900.0, ours: true }];
/// let svg = bar_chart("Memory per connection", "B", &bars, Some((4096.0, "aim 4 KiB")))?;
/// assert!(svg.contains("3,900 B") && svg.contains("aim 4 KiB"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn bar_chart(
    title: &str,
    unit: &str,
    bars: &[Bar],
    aim: Option<(f64, &str)>,
) -> io::Result<String> {
    let n = bars.len();
    // An empty row on top holds the aim's label.
    let rows = (n + usize::from(aim.is_some())).max(1);
    let max = bars
        .iter()
        .map(|b| b.value)
        .chain(aim.map(|a| a.0))
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    // Wide enough for the longest label at 7 px a character (12 px DejaVu Sans, wider than
    // most sans-serif fonts a viewer picks).
    let longest = bars
        .iter()
        .map(|b| b.label.chars().count())
        .max()
        .unwrap_or(0);
    let label_area = (longest as u32 * 7 + 16).max(80);
    let height = ROW * rows as u32 + 90;
    let text = ("sans-serif", TEXT).into_font();
    // Bar `i` (from the top) sits in segment `n - 1 - i`; a segment's edges are `Exact(k)`.
    let row = |i: usize| (n - 1 - i) as i32;
    let edge = |k: i32| {
        if k as usize >= rows {
            SegmentValue::Last
        } else {
            SegmentValue::Exact(k)
        }
    };
    let y_label = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(k) if (*k as usize) < n => bars[n - 1 - *k as usize].label.clone(),
        _ => String::new(),
    };
    let x_label = |v: &f64| tick(*v);
    let mixed = bars.iter().any(|b| b.ours) && bars.iter().any(|b| !b.ours);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, height)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", TITLE, FontStyle::Bold))
            .margin(10)
            .margin_right(20)
            .x_label_area_size(40)
            .y_label_area_size(label_area)
            .build_cartesian_2d(0.0..max * 1.25, (0..rows as i32 - 1).into_segmented())
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .x_labels(6)
            .x_label_formatter(&x_label)
            .y_labels(rows)
            .y_label_formatter(&y_label)
            .x_desc(unit)
            .label_style(text.clone())
            .axis_desc_style(text.clone())
            .draw()
            .map_err(drawing)?;

        for (ours, color, legend) in [
            (false, PEER, "published figure"),
            (true, OURS, "longlink, measured here"),
        ] {
            let mine = bars.iter().enumerate().filter(|(_, b)| b.ours == ours);
            let drawn = chart
                .draw_series(mine.map(|(i, b)| {
                    let k = row(i);
                    let top_right = (b.value.max(0.0), edge(k + 1));
                    let mut bar = Rectangle::new([(0.0, edge(k)), top_right], color.filled());
                    bar.set_margin(GAP, GAP, 0, 0);
                    bar
                }))
                .map_err(drawing)?;
            if mixed {
                drawn.label(legend).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 12, y + 6)], color.filled())
                });
            }
        }
        let value_style = TextStyle::from(text.clone()).pos(Pos::new(HPos::Left, VPos::Center));
        chart
            .draw_series(bars.iter().enumerate().map(|(i, bar)| {
                let at = (bar.value.max(0.0), SegmentValue::CenterOf(row(i)));
                let value = format!("{} {unit}", human(bar.value));
                EmptyElement::at(at) + Text::new(value, (6, 0), value_style.clone())
            }))
            .map_err(drawing)?;

        if let Some((value, label)) = aim {
            let line = [(value, SegmentValue::Exact(0)), (value, SegmentValue::Last)];
            chart
                .draw_series([DashedPathElement::new(line, 4, 3, AIM.stroke_width(1))])
                .map_err(drawing)?;
            let at = (value, SegmentValue::CenterOf(rows as i32 - 1));
            let style = text.color(&AIM).pos(Pos::new(HPos::Left, VPos::Center));
            chart
                .draw_series([EmptyElement::at(at) + Text::new(label.to_owned(), (5, 0), style)])
                .map_err(drawing)?;
        }
        if mixed {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .label_font(("sans-serif", TEXT))
                .background_style(WHITE)
                .border_style(GRID)
                .draw()
                .map_err(drawing)?;
        }
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

/// plotters' error holds the backend's error; the caller only reports it.
fn drawing(e: impl std::error::Error) -> io::Error {
    io::Error::other(format!("drawing a chart: {e}"))
}

/// An axis tick: whole numbers without the `.00` a bar's value gets.
fn tick(v: f64) -> String {
    if v < 100.0 && v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        human(v)
    }
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
fn named(dir: &Path, prefix: &str) -> io::Result<Vec<(String, Value)>> {
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
pub fn write_all(results: &Path, out: &Path) -> io::Result<Vec<String>> {
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    let mut save = |name: &str, svg: io::Result<String>| -> io::Result<()> {
        std::fs::write(out.join(name), svg?)?;
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

    /// `(x, width)` of each `<rect>` filled with `fill`, in document order.
    fn rects(svg: &str, fill: &str) -> Vec<(f64, f64)> {
        let attr = |tag: &str, name: &str| -> f64 {
            let at = tag.find(&format!(" {name}=\"")).expect(name) + name.len() + 3;
            tag[at..].split('"').next().unwrap().parse().unwrap()
        };
        svg.split("<rect")
            .skip(1)
            .filter(|tag| tag.contains(&format!("fill=\"{fill}\"")))
            .map(|tag| (attr(tag, "x"), attr(tag, "width")))
            .collect()
    }

    #[test]
    fn a_chart_has_a_bar_per_value_scaled_to_the_largest_and_the_aim_line() {
        let svg = bar_chart(
            "t <1>",
            "B",
            &[ours("a", 100.0), peer("b", 50.0)],
            Some((200.0, "aim")),
        )
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // A bar and a legend swatch (12 px wide) in each colour.
        let (a, b) = (rects(&svg, "#1F5FA8"), rects(&svg, "#B9B9B9"));
        assert_eq!((a.len(), b.len()), (2, 2), "{svg}");
        let ((ax, aw), (bx, bw)) = (a[0], b[0]);
        assert_eq!(ax, bx);
        assert!((aw - 2.0 * bw).abs() <= 1.0, "a {aw} is twice b {bw}");
        // The aim (200) is twice a (100): its dashed line is two of a's widths from the axis.
        let aim = svg.find("stroke=\"#C0392B\"").expect("aim line");
        let line = &svg[aim + svg[aim..].find("points=\"").unwrap() + 8..];
        let aim_x: f64 = line.split(',').next().unwrap().parse().unwrap();
        assert!((aim_x - (ax + 2.0 * aw)).abs() <= 1.0, "aim at {aim_x}");
        assert!(svg.contains("t &lt;1&gt;"));
        // plotters writes a text element's content on a line of its own.
        assert!(svg.contains("\n100 B\n") && svg.contains("\n50.00 B\n"));
        assert!(svg.contains("longlink, measured here") && svg.contains("published figure"));
        assert_eq!(human(30_720.0), "30,720");
        assert_eq!(human(1_500_000.0), "1.50M");
        assert_eq!(human(8.83), "8.83");
        assert_eq!(tick(20.0), "20");
    }

    #[test]
    fn a_chart_of_ours_only_has_no_legend() {
        let svg = bar_chart("t", "ms", &[ours("p50", 1.0), ours("p99", 9.0)], None).unwrap();
        assert_eq!(rects(&svg, "#1F5FA8").len(), 2);
        assert!(!svg.contains("measured here") && !svg.contains("#C0392B"));
    }
}
