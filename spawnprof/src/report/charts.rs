//! Small, dependency-free SVG charts: stacked bars, line charts and a
//! histogram. Written by hand rather than with a plotting crate because the
//! charts need little (axes, nice ticks, a legend), should carry hover
//! tooltips (`<title>`), must embed inline in the HTML report without id
//! clashes, and come out byte-for-byte deterministic for tests.
//!
//! Every function returns a complete `<svg>` element (no XML declaration),
//! usable both as a file and inline in HTML.
use std::fmt::Write as _;

use crate::{
    model::Family,
    units::{format_bytes, format_ns},
};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 380.0;
const LEFT: f64 = 78.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 58.0;
/// Width a bar's slot needs for its labels (category below, total above).
const MIN_SLOT: f64 = 78.0;
const FONT: &str = "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif\"";

/// Twenty distinguishable colours; series and stages take them in order.
pub const PALETTE: &[&str] = &[
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1f77b4", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79",
];

/// Each stage's colour: one hue per [`Family`] (mm copy orange, scheduler
/// blue, exec green, user work purple, the task copy tan), a shade per
/// stage, the same in every chart and flamegraph.
pub fn stage_color(stage: &str) -> Option<&'static str> {
    Some(match stage {
        "copy_process" => "#c2ab8a",
        "clone" => "#d8cab3",
        "dup_mmap" => "#e8743b",
        "mm_lock_wait" => "#f5b77a",
        "copy_page_range" => "#cf4a2a",
        "anon_vma_fork" => "#f09a5c",
        "fork_wakeup" => "#8fb4dc",
        "sched_delay" => "#3d74b0",
        "parent_return" => "#a9c7e8",
        "vfork_resume" => "#5d8fc8",
        "reap_delay" => "#c3d8ef",
        "path_search" => "#a3d495",
        "exec" => "#4ca653",
        "exec_load" => "#2f8a3d",
        "exec_replace" => "#6bbf60",
        "exec_finish" => "#b6e0ad",
        "pre_exec" => "#a57cc4",
        "run" => "#cdb3e0",
        _ => return None,
    })
}

/// A family's colour in legends: its main stage's.
pub fn family_color(f: Family) -> &'static str {
    match f {
        Family::Task => "#c2ab8a",
        Family::MmCopy => "#e8743b",
        Family::Scheduler => "#3d74b0",
        Family::Exec => "#4ca653",
        Family::UserWork => "#a57cc4",
    }
}

/// `#rrggbb` as its three components.
pub fn rgb(hex: &str) -> (u8, u8, u8) {
    let c = |i: usize| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("80"), 16).unwrap_or(128);
    (c(1), c(3), c(5))
}

/// How an axis's numbers are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Plain,
    /// Nanoseconds, printed as `850 ns`, `12.3 µs`, `4.56 ms`.
    Nanos,
    /// Bytes, printed as `4 KiB`, `1.5 MiB`.
    Bytes,
}

impl Unit {
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Nanos if v >= 0.0 => format_ns(v.round() as u64),
            Unit::Bytes if v >= 0.0 => format_bytes(v.round() as u64),
            // A fitted slope can come out below zero: "-8.05 µs", not "-8045.5".
            Unit::Nanos | Unit::Bytes if v < 0.0 => format!("-{}", self.format(-v)),
            _ => plain(v),
        }
    }
}

fn plain(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e6 || v.abs() < 1e-3 {
        format!("{v:.2e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// An axis: its label, how its numbers read, and whether it is logarithmic.
#[derive(Clone, Debug)]
pub struct Axis {
    pub label: String,
    pub unit: Unit,
    pub log: bool,
    /// Ticks at these values instead of computed ones (say the sizes a
    /// bench measured: 256 MiB, 1 GiB, 4 GiB rather than 954 MiB).
    pub ticks: Option<Vec<f64>>,
}

impl Axis {
    pub fn new(label: &str, unit: Unit) -> Self {
        Self {
            label: label.into(),
            unit,
            log: false,
            ticks: None,
        }
    }

    pub fn log(mut self) -> Self {
        self.log = true;
        self
    }

    /// Ticks at `values` (sorted, duplicates dropped).
    pub fn at(mut self, mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        values.dedup();
        self.ticks = Some(values);
        self
    }
}

/// Escapes text for XML/HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab/newline are not allowed in XML.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// "Nice" tick values (1, 2, 5 × 10^k steps) covering `lo..=hi`.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let start = (lo / step).floor() * step;
    let mut ticks = Vec::new();
    let mut v = start;
    while v <= hi + step * 1e-9 {
        // Snap away float noise such as 0.30000000000000004.
        ticks.push((v / step).round() * step);
        v += step;
    }
    if ticks.last().is_some_and(|t| *t < hi) {
        ticks.push(ticks.last().copied().unwrap_or(hi) + step);
    }
    ticks
}

/// Powers of ten covering `lo..=hi` (both > 0), for log axes.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    (a..=b.max(a + 1)).map(|e| 10f64.powi(e)).collect()
}

/// Ticks inside `lo..=hi` on a log axis: powers of ten, plus 2× and 5×
/// when the range spans too few decades to show more than one or two.
fn log_ticks_inside(lo: f64, hi: f64) -> Vec<f64> {
    let inside = |t: &f64| *t >= lo * (1.0 - 1e-9) && *t <= hi * (1.0 + 1e-9);
    let decades: Vec<f64> = log_ticks(lo, hi).into_iter().filter(inside).collect();
    if decades.len() >= 3 {
        return decades;
    }
    log_ticks(lo, hi)
        .into_iter()
        .flat_map(|d| [d, 2.0 * d, 5.0 * d])
        .filter(inside)
        .collect()
}

/// Maps data values to pixels along one axis.
struct Scale {
    lo: f64,
    hi: f64,
    log: bool,
    px0: f64,
    px1: f64,
}

impl Scale {
    fn at(&self, v: f64) -> f64 {
        let f = |x: f64| if self.log { x.max(1e-300).log10() } else { x };
        let (lo, hi) = (f(self.lo), f(self.hi));
        let t = if hi > lo {
            (f(v) - lo) / (hi - lo)
        } else {
            0.5
        };
        self.px0 + t * (self.px1 - self.px0)
    }
}

fn ticks_for(axis: &Axis, lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if let Some(t) = &axis.ticks {
        return t.clone();
    }
    if axis.log {
        log_ticks(lo, hi)
    } else {
        nice_ticks(lo, hi, target)
    }
}

fn open(out: &mut String, title: &str, width: f64, height: f64) {
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" {FONT} font-size="12"><title>{t}</title><rect width="{width}" height="{height}" fill="#ffffff"/><text x="{x}" y="24" text-anchor="middle" font-size="15" font-weight="600">{t}</text>"##,
        t = escape(title),
        x = width / 2.0,
    );
}

fn no_data(title: &str) -> String {
    let mut out = String::new();
    open(&mut out, title, WIDTH, 120.0);
    let _ = write!(
        out,
        r##"<text x="{}" y="72" text-anchor="middle" fill="#666">no data</text></svg>"##,
        WIDTH / 2.0
    );
    out
}

/// One axis of a plot: the data range it spans, whether it is
/// logarithmic, the ticks to draw (none: no gridlines or numbers) and the
/// axis they are labelled by.
struct Ruler<'a> {
    axis: &'a Axis,
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<f64>,
}

impl<'a> Ruler<'a> {
    /// `axis` over `lo..=hi` and out to its outer ticks, where they lie
    /// beyond the data.
    fn covering(axis: &'a Axis, lo: f64, hi: f64, ticks: Vec<f64>) -> Self {
        Ruler {
            axis,
            lo: ticks.first().copied().unwrap_or(lo).min(lo),
            hi: ticks.last().copied().unwrap_or(hi).max(hi),
            log: axis.log,
            ticks,
        }
    }

    /// Linear from zero up to the first nice tick at or above `max`
    /// (counts, and bars that stack).
    fn from_zero(axis: &'a Axis, max: f64, target: usize) -> Self {
        let ticks = nice_ticks(0.0, max, target);
        Ruler {
            axis,
            lo: 0.0,
            hi: ticks.last().copied().unwrap_or(max),
            log: false,
            ticks,
        }
    }

    /// Maps the range onto the pixels from `px0` to `px1`.
    fn scale(&self, px0: f64, px1: f64) -> Scale {
        Scale {
            lo: self.lo,
            hi: self.hi,
            log: self.log,
            px0,
            px1,
        }
    }
}

/// A chart being drawn: the `<svg>` so far and the scales of its plot
/// area, from `LEFT` to the plot's right edge and from `TOP` down to
/// `BOTTOM` above the chart's foot.
struct Plot {
    out: String,
    x: Scale,
    y: Scale,
}

impl Plot {
    /// Opens the chart (title) and draws its frame: gridlines, ticks and
    /// the axis labels. The x label is the x axis's; the y ticks are
    /// labelled in the y axis's unit.
    fn begin(
        title: &str,
        (width, height): (f64, f64),
        plot_right: f64,
        x: Ruler<'_>,
        y: Ruler<'_>,
    ) -> Self {
        let mut plot = Plot {
            out: String::new(),
            x: x.scale(LEFT, plot_right),
            y: y.scale(height - BOTTOM, TOP),
        };
        open(&mut plot.out, title, width, height);
        plot.axes(&x, &y);
        plot
    }

    /// Axis lines, gridlines, tick labels and axis labels.
    fn axes(&mut self, xr: &Ruler<'_>, yr: &Ruler<'_>) {
        let (x, y, out) = (&self.x, &self.y, &mut self.out);
        let (top, bottom, plot_right) = (y.px1, y.px0, x.px1);
        for &t in &yr.ticks {
            let py = y.at(t);
            let _ = write!(
                out,
                r##"<line x1="{LEFT}" x2="{plot_right}" y1="{py:.1}" y2="{py:.1}" stroke="#e3e3e3"/><text x="{lx}" y="{ty:.1}" text-anchor="end" fill="#444">{label}</text>"##,
                lx = LEFT - 6.0,
                ty = py + 4.0,
                label = escape(&yr.axis.unit.format(t)),
            );
        }
        // A tick label too close to the last one drawn is left out (its
        // gridline stays): 0 and 256 MiB on a 4 GiB axis would overlap.
        let mut last_label: Option<(f64, usize)> = None;
        for &t in &xr.ticks {
            let px = x.at(t);
            let label = xr.axis.unit.format(t);
            let chars = label.chars().count();
            let clear =
                last_label.is_none_or(|(lx, lc)| px - lx >= 3.6 * (lc + chars) as f64 + 6.0);
            let _ = write!(
                out,
                r##"<line x1="{px:.1}" x2="{px:.1}" y1="{top}" y2="{bottom}" stroke="#efefef"/>"##
            );
            if clear {
                let _ = write!(
                    out,
                    r##"<text x="{px:.1}" y="{ty}" text-anchor="middle" fill="#444">{label}</text>"##,
                    ty = bottom + 16.0,
                    label = escape(&label),
                );
                last_label = Some((px, chars));
            }
        }
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{LEFT}" y1="{top}" y2="{bottom}" stroke="#888"/><line x1="{LEFT}" x2="{plot_right}" y1="{bottom}" y2="{bottom}" stroke="#888"/><text x="{cx}" y="{by}" text-anchor="middle" fill="#222">{xl}</text><text transform="translate(16 {cy}) rotate(-90)" text-anchor="middle" fill="#222">{yl}</text>"##,
            cx = (LEFT + plot_right) / 2.0,
            by = bottom + 40.0,
            cy = (top + bottom) / 2.0,
            xl = escape(&xr.axis.label),
            yl = escape(&yr.axis.label),
        );
    }

    /// The legend right of the plot (none when `entries` is empty), and
    /// the chart closed.
    fn end(mut self, entries: &[(&str, &str)]) -> String {
        legend(&mut self.out, self.x.px1 + 18.0, TOP + 8.0, entries);
        self.out.push_str("</svg>");
        self.out
    }
}

/// Room to keep right of the plot for a legend of `names`: the swatch and
/// the gap before the text (34 px from the plot's edge, see [`legend`]
/// and its callers) less the 10 px right margin, then ~7.5 px per character
/// of 12 px sans-serif, so the longest name is not cut at the chart's edge.
fn legend_width<'a>(names: impl Iterator<Item = &'a str>) -> f64 {
    let longest = names.map(|n| n.chars().count()).max().unwrap_or(0);
    30.0 + 7.5 * longest as f64
}

/// A legend: one coloured swatch and name per entry, top to bottom.
fn legend(out: &mut String, x: f64, y: f64, entries: &[(&str, &str)]) {
    for (i, (name, color)) in entries.iter().enumerate() {
        let ly = y + i as f64 * 17.0;
        let _ = write!(
            out,
            r##"<rect x="{x}" y="{sy}" width="11" height="11" fill="{color}"/><text x="{tx}" y="{ty}" fill="#222">{name}</text>"##,
            sy = ly - 9.0,
            tx = x + 16.0,
            ty = ly,
            name = escape(name),
        );
    }
}

/// One stacked bar per category, segments in `stage_names` order from the
/// bottom; `values[category][stage]` are nanoseconds.
pub fn stacked_bars<C: AsRef<str>, S: AsRef<str>>(
    title: &str,
    categories: &[C],
    stage_names: &[S],
    values: &[Vec<f64>],
) -> String {
    stacked_bars_with(
        title,
        &Axis::new("mean time per spawn", Unit::Nanos),
        categories,
        stage_names,
        values,
    )
}

/// [`stacked_bars`] with any y axis (drawn linear from zero: the segments
/// stack).
pub fn stacked_bars_with<C: AsRef<str>, S: AsRef<str>>(
    title: &str,
    y_axis: &Axis,
    categories: &[C],
    stage_names: &[S],
    values: &[Vec<f64>],
) -> String {
    let colors: Vec<&str> = (0..stage_names.len())
        .map(|i| PALETTE[i % PALETTE.len()])
        .collect();
    stacked_bars_colored(title, y_axis, categories, stage_names, &colors, values)
}

/// [`stacked_bars_with`] with a colour per stage (`colors[stage]`).
pub fn stacked_bars_colored<C: AsRef<str>, S: AsRef<str>>(
    title: &str,
    y_axis: &Axis,
    categories: &[C],
    stage_names: &[S],
    colors: &[&str],
    values: &[Vec<f64>],
) -> String {
    stacked_bars_labelled(title, y_axis, categories, stage_names, colors, values, None)
}

/// Each bar's height: the sum of its drawable segments.
fn bar_totals(values: &[Vec<f64>]) -> Vec<f64> {
    values
        .iter()
        .map(|v| v.iter().filter(|x| x.is_finite() && **x > 0.0).sum())
        .collect()
}

/// One bar per category, each its stages' shares of it (stacked to 100%),
/// topped by `totals` (what 100% is, e.g. the call's mean), so methods a
/// thousand times apart read alike. `values[category][stage]` are ns.
pub fn share_bars<C: AsRef<str>, S: AsRef<str>>(
    title: &str,
    categories: &[C],
    stage_names: &[S],
    colors: &[&str],
    values: &[Vec<f64>],
) -> String {
    let totals = bar_totals(values);
    let shares: Vec<Vec<f64>> = values
        .iter()
        .zip(&totals)
        .map(|(v, t)| {
            v.iter()
                .map(|x| if *t > 0.0 { 100.0 * x / t } else { 0.0 })
                .collect()
        })
        .collect();
    let labels: Vec<String> = totals.iter().map(|t| format_ns(t.round() as u64)).collect();
    stacked_bars_labelled(
        title,
        &Axis::new("share of the spawn call (%)", Unit::Plain),
        categories,
        stage_names,
        colors,
        &shares,
        Some(&labels),
    )
}

/// [`stacked_bars_colored`], topped by `top_labels` instead of the totals.
fn stacked_bars_labelled<C: AsRef<str>, S: AsRef<str>>(
    title: &str,
    y_axis: &Axis,
    categories: &[C],
    stage_names: &[S],
    colors: &[&str],
    values: &[Vec<f64>],
    top_labels: Option<&[String]>,
) -> String {
    let totals = bar_totals(values);
    // Rounded to a millionth, so shares that add up to 100.0000001 still
    // end the axis at 100.
    let max = (totals.iter().copied().fold(0.0, f64::max) * 1e6).round() / 1e6;
    if categories.is_empty() || max <= 0.0 {
        return no_data(title);
    }
    let legend_w = legend_width(stage_names.iter().map(|s| s.as_ref())).clamp(110.0, 260.0);
    let height = HEIGHT.max(TOP + BOTTOM + 17.0 * stage_names.len() as f64 + 20.0);
    // Wider than the usual chart when the bars would be too narrow for
    // their labels.
    let plot_right = (WIDTH - legend_w - 10.0).max(LEFT + MIN_SLOT * categories.len() as f64);
    let width = plot_right + legend_w + 10.0;
    // The categories along x need no ticks or label: each bar places itself.
    let categories_axis = Axis::new("", Unit::Plain);
    let categories_ruler = Ruler {
        axis: &categories_axis,
        lo: 0.0,
        hi: 1.0,
        log: false,
        ticks: Vec::new(),
    };
    let y = Ruler::from_zero(y_axis, max, 6);
    let mut plot = Plot::begin(title, (width, height), plot_right, categories_ruler, y);
    let slot = (plot_right - LEFT) / categories.len() as f64;
    let bar_w = (slot * 0.6).min(120.0);
    for (ci, cat) in categories.iter().enumerate() {
        let bx = LEFT + slot * (ci as f64 + 0.5) - bar_w / 2.0;
        let row = values.get(ci).map(Vec::as_slice).unwrap_or(&[]);
        let bar = Bar {
            x: bx,
            width: bar_w,
            category: cat.as_ref(),
            total: totals[ci],
            label: top_labels.and_then(|l| l.get(ci)).map(String::as_str),
        };
        plot.stacked_bar(&bar, stage_names, colors, row, y_axis);
    }
    // Legend top to bottom in the order the segments stack, top first.
    let entries: Vec<(&str, &str)> = stage_names
        .iter()
        .zip(colors)
        .rev()
        .map(|(s, c)| (s.as_ref(), *c))
        .collect();
    plot.end(&entries)
}

/// One bar of [`stacked_bars_with`]: where it stands and what it totals.
struct Bar<'a> {
    x: f64,
    width: f64,
    category: &'a str,
    total: f64,
    /// Printed above the bar instead of its total.
    label: Option<&'a str>,
}

impl Plot {
    /// A bar's segments, bottom up in `stage_names` order, each with its
    /// tooltip; then its total above it and its category below the axis.
    fn stacked_bar<S: AsRef<str>>(
        &mut self,
        bar: &Bar<'_>,
        stage_names: &[S],
        colors: &[&str],
        row: &[f64],
        y_axis: &Axis,
    ) {
        let (y, out) = (&self.y, &mut self.out);
        let Bar {
            x: bx,
            width: bar_w,
            category,
            total,
            label,
        } = *bar;
        let cat = escape(category);
        let mut acc = 0.0;
        for (si, stage) in stage_names.iter().enumerate() {
            let v = row.get(si).copied().unwrap_or(0.0);
            if !(v.is_finite() && v > 0.0) {
                continue;
            }
            let (y0, y1) = (y.at(acc), y.at(acc + v));
            acc += v;
            let share = 100.0 * v / total;
            let _ = write!(
                out,
                r##"<rect x="{bx:.1}" y="{y1:.1}" width="{bar_w:.1}" height="{h:.2}" fill="{color}" stroke="#fff" stroke-width="0.5"><title>{cat}: {stage} {val} ({share:.1}%)</title></rect>"##,
                h = (y0 - y1).max(0.0),
                color = colors.get(si).copied().unwrap_or("#999999"),
                stage = escape(stage.as_ref()),
                val = escape(&y_axis.unit.format(v)),
            );
        }
        let _ = write!(
            out,
            r##"<text x="{cx:.1}" y="{ty:.1}" text-anchor="middle" fill="#222" font-weight="600">{total}</text><text x="{cx:.1}" y="{ly:.1}" text-anchor="middle" fill="#222">{cat}</text>"##,
            cx = bx + bar_w / 2.0,
            ty = y.at(total) - 5.0,
            total = escape(&label.map_or_else(|| y_axis.unit.format(total), str::to_string)),
            ly = y.px0 + 18.0,
        );
    }
}

/// Lines through `(x, y)` points, one per named series, plain numbers on
/// both axes. See [`line_chart_with`] for units and log axes.
pub fn line_chart<S: AsRef<str>>(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(S, Vec<(f64, f64)>)],
) -> String {
    line_chart_with(
        title,
        &Axis::new(x_label, Unit::Plain),
        &Axis::new(y_label, Unit::Plain),
        series,
    )
}

/// A line chart whose axes carry units (`Unit::Bytes` for RSS,
/// `Unit::Nanos` for spawn time) and may be logarithmic.
pub fn line_chart_with<S: AsRef<str>>(
    title: &str,
    x_axis: &Axis,
    y_axis: &Axis,
    series: &[(S, Vec<(f64, f64)>)],
) -> String {
    let Some([xlo, xhi, ylo, yhi]) = line_extent(series, x_axis, y_axis) else {
        return no_data(title);
    };
    let names: Vec<&str> = series.iter().map(|(n, _)| n.as_ref()).collect();
    let legend_w = legend_width(names.iter().copied());
    let plot_right = WIDTH - legend_w.clamp(90.0, 240.0) - 10.0;
    let x = Ruler::covering(x_axis, xlo, xhi, ticks_for(x_axis, xlo, xhi, 7));
    let y = Ruler::covering(y_axis, ylo, yhi, ticks_for(y_axis, ylo, yhi, 6));
    let mut plot = Plot::begin(title, (WIDTH, HEIGHT), plot_right, x, y);
    for (si, (name, pts)) in series.iter().enumerate() {
        let color = PALETTE[si % PALETTE.len()];
        let mut pts: Vec<(f64, f64)> = pts
            .iter()
            .copied()
            .filter(|p| plottable(*p, x_axis, y_axis))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        plot.line(name.as_ref(), color, &pts, x_axis, y_axis);
    }
    let entries: Vec<(&str, &str)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, PALETTE[i % PALETTE.len()]))
        .collect();
    plot.end(&entries)
}

/// Whether a point can be drawn: finite, and above zero on a log axis.
fn plottable((x, y): (f64, f64), x_axis: &Axis, y_axis: &Axis) -> bool {
    let ok = |v: f64, log: bool| v.is_finite() && (!log || v > 0.0);
    ok(x, x_axis.log) && ok(y, y_axis.log)
}

/// `[xlo, xhi, ylo, yhi]` of the points that can be drawn, widened where
/// the data alone would give an empty range; `None` without such points.
fn line_extent<S>(
    series: &[(S, Vec<(f64, f64)>)],
    x_axis: &Axis,
    y_axis: &Axis,
) -> Option<[f64; 4]> {
    let points = || {
        series
            .iter()
            .flat_map(|(_, p)| p.iter())
            .filter(|p| plottable(**p, x_axis, y_axis))
    };
    let first = points().next()?;
    let (mut xlo, mut xhi, mut ylo, mut yhi) = (first.0, first.0, first.1, first.1);
    for (x, y) in points() {
        (xlo, xhi, ylo, yhi) = (xlo.min(*x), xhi.max(*x), ylo.min(*y), yhi.max(*y));
    }
    if !y_axis.log {
        // Time and size axes read best from zero.
        ylo = ylo.min(0.0);
    }
    if xhi <= xlo {
        (xlo, xhi) = if x_axis.log {
            (xlo / 2.0, xhi * 2.0)
        } else {
            (xlo - 1.0, xhi + 1.0)
        };
    }
    if yhi <= ylo {
        yhi = if y_axis.log { ylo * 10.0 } else { ylo + 1.0 };
    }
    Some([xlo, xhi, ylo, yhi])
}

impl Plot {
    /// One series: a polyline through `pts` (sorted by x) and a dot with a
    /// tooltip at each point.
    fn line(&mut self, name: &str, color: &str, pts: &[(f64, f64)], x_axis: &Axis, y_axis: &Axis) {
        let (x, y, out) = (&self.x, &self.y, &mut self.out);
        let path: Vec<String> = pts
            .iter()
            .map(|(px, py)| format!("{:.1},{:.1}", x.at(*px), y.at(*py)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for (px, py) in pts {
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{}: {} → {}</title></circle>"#,
                x.at(*px),
                y.at(*py),
                escape(name),
                escape(&x_axis.unit.format(*px)),
                escape(&y_axis.unit.format(*py)),
            );
        }
    }
}

/// One histogram bin: `[lo, hi)` and how many values fell in it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub count: u64,
}

/// Bars of counts over bins (log x axis when `x_axis.log`), with labelled
/// vertical markers (e.g. p50, p99).
pub fn histogram(title: &str, x_axis: &Axis, bins: &[Bin], markers: &[(&str, f64)]) -> String {
    let bins: Vec<Bin> = bins
        .iter()
        .copied()
        .filter(|b| b.hi > b.lo && (!x_axis.log || b.lo > 0.0))
        .collect();
    let max = bins.iter().map(|b| b.count).max().unwrap_or(0);
    if max == 0 {
        return no_data(title);
    }
    let (xlo, xhi) = (bins[0].lo, bins[bins.len() - 1].hi);
    let plot_right = WIDTH - 24.0;
    let xticks: Vec<f64> = if x_axis.log {
        log_ticks_inside(xlo, xhi)
    } else {
        nice_ticks(xlo, xhi, 7)
            .into_iter()
            .filter(|t| *t >= xlo && *t <= xhi)
            .collect()
    };
    let x = Ruler {
        axis: x_axis,
        lo: xlo,
        hi: xhi,
        log: x_axis.log,
        ticks: xticks,
    };
    let spawns = Axis::new("spawns", Unit::Plain);
    let mut plot = Plot::begin(
        title,
        (WIDTH, HEIGHT),
        plot_right,
        x,
        Ruler::from_zero(&spawns, max as f64, 5),
    );
    plot.bins(&bins, x_axis);
    plot.markers(markers, x_axis);
    plot.end(&[])
}

impl Plot {
    /// A histogram's bars, one per non-empty bin, with its range and count
    /// as the tooltip.
    fn bins(&mut self, bins: &[Bin], x_axis: &Axis) {
        let (x, y, out) = (&self.x, &self.y, &mut self.out);
        for b in bins {
            if b.count == 0 {
                continue;
            }
            let (x0, x1, y1) = (x.at(b.lo), x.at(b.hi), y.at(b.count as f64));
            let _ = write!(
                out,
                r##"<rect x="{x0:.1}" y="{y1:.1}" width="{w:.2}" height="{h:.1}" fill="#4e79a7" stroke="#fff" stroke-width="0.5"><title>{lo} – {hi}: {n}</title></rect>"##,
                w = (x1 - x0).max(0.5),
                h = y.px0 - y1,
                lo = escape(&x_axis.unit.format(b.lo)),
                hi = escape(&x_axis.unit.format(b.hi)),
                n = b.count,
            );
        }
    }

    /// Labelled dashed vertical lines at `markers` inside the x range.
    fn markers(&mut self, markers: &[(&str, f64)], x_axis: &Axis) {
        let (x, y, out) = (&self.x, &self.y, &mut self.out);
        let plot_right = x.px1;
        for (i, (label, v)) in markers.iter().enumerate() {
            if !(*v >= x.lo && *v <= x.hi) {
                continue;
            }
            let px = x.at(*v);
            // Labels near the right edge go on the line's left, inside the
            // chart; a white halo keeps them readable over the bars.
            let (tx, anchor) = if px > plot_right - 110.0 {
                (px - 4.0, "end")
            } else {
                (px + 4.0, "start")
            };
            let _ = write!(
                out,
                r##"<line x1="{px:.1}" x2="{px:.1}" y1="{top}" y2="{bot}" stroke="#c0392b" stroke-width="1.5" stroke-dasharray="5 3"/><text x="{tx:.1}" y="{ty}" text-anchor="{anchor}" fill="#c0392b" font-weight="600" stroke="#ffffff" stroke-width="4" stroke-linejoin="round" paint-order="stroke">{label} {val}</text>"##,
                top = TOP,
                bot = y.px0,
                ty = TOP + 12.0 + 15.0 * i as f64,
                label = escape(label),
                val = escape(&x_axis.unit.format(*v)),
            );
        }
    }
}

/// Logarithmic bins for nanosecond values: `PER_DECADE` per power of ten
/// from 10 ns to 1000 s; values outside land in the end bins. Fixed bins
/// let a histogram be filled one value at a time in constant memory.
#[derive(Clone, Debug)]
pub struct LogHistogram {
    counts: Vec<u64>,
}

impl Default for LogHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LogHistogram {
    const PER_DECADE: usize = 10;
    const MIN_EXP: i32 = 1;
    const MAX_EXP: i32 = 12;

    pub fn new() -> Self {
        let n = (Self::MAX_EXP - Self::MIN_EXP) as usize * Self::PER_DECADE;
        Self { counts: vec![0; n] }
    }

    fn edge(i: usize) -> f64 {
        10f64.powf(Self::MIN_EXP as f64 + i as f64 / Self::PER_DECADE as f64)
    }

    pub fn add(&mut self, ns: u64) {
        let pos = ((ns.max(1) as f64).log10() - Self::MIN_EXP as f64) * Self::PER_DECADE as f64;
        let i = (pos.floor().max(0.0) as usize).min(self.counts.len() - 1);
        self.counts[i] += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds another histogram's counts (same fixed bins).
    pub fn merge(&mut self, other: &LogHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// The value below which a fraction `q` of the values lie: the
    /// geometric middle of its bin, so within a bin's width (26%) of the
    /// true one. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let n = self.total();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        let i = self.counts.iter().position(|&c| {
            seen += c;
            seen >= rank
        })?;
        Some((Self::edge(i) * Self::edge(i + 1)).sqrt().round() as u64)
    }

    /// The bins from the first to the last non-empty one.
    pub fn bins(&self) -> Vec<Bin> {
        let first = self.counts.iter().position(|c| *c > 0);
        let last = self.counts.iter().rposition(|c| *c > 0);
        let (Some(first), Some(last)) = (first, last) else {
            return Vec::new();
        };
        (first..=last)
            .map(|i| Bin {
                lo: Self::edge(i),
                hi: Self::edge(i + 1),
                count: self.counts[i],
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).expect("chart is well-formed XML")
    }

    fn texts(doc: &roxmltree::Document<'_>) -> Vec<String> {
        doc.descendants()
            .filter(|n| n.tag_name().name() == "text")
            .filter_map(|n| n.text().map(str::to_string))
            .collect()
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            nice_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        let t = nice_ticks(0.0, 730.0, 6);
        assert_eq!(t.first(), Some(&0.0));
        assert!(*t.last().unwrap() >= 730.0);
        assert!(
            t.windows(2).all(|w| (w[1] - w[0] - 200.0).abs() < 1e-9),
            "{t:?}"
        );
        assert_eq!(
            log_ticks(3.0, 4000.0),
            vec![1.0, 10.0, 100.0, 1000.0, 10000.0]
        );
        assert_eq!(log_ticks_inside(3.0, 4000.0), vec![10.0, 100.0, 1000.0]);
        assert_eq!(log_ticks_inside(60.0, 700.0), vec![100.0, 200.0, 500.0]);
    }

    #[test]
    fn stacked_bars_stack_each_stage_with_tooltips_and_legend() {
        let svg = stacked_bars(
            "Where <spawn> time goes",
            &["fork", "vfork"],
            &["copy_process", "exec"],
            &[vec![3000.0, 1000.0], vec![500.0, 1500.0]],
        );
        let doc = parse(&svg);
        let rects: Vec<_> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "rect" && n.attribute("fill") != Some("#ffffff"))
            .collect();
        // 4 segments + 2 legend swatches.
        assert_eq!(rects.len(), 6);
        let t = texts(&doc);
        assert!(t.contains(&"Where <spawn> time goes".to_string()));
        assert!(t.contains(&"4 µs".to_string()), "fork total label: {t:?}");
        assert!(t.contains(&"copy_process".to_string()) && t.contains(&"vfork".to_string()));
        let tips: Vec<&str> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "title")
            .filter_map(|n| n.text())
            .collect();
        assert!(
            tips.contains(&"fork: copy_process 3 µs (75.0%)"),
            "{tips:?}"
        );
        // The fork bar's segments: 3000 at the bottom, taller than 1000 above.
        let heights: Vec<f64> = rects
            .iter()
            .filter(|r| r.attribute("width") != Some("11"))
            .map(|r| r.attribute("height").unwrap().parse().unwrap())
            .collect();
        assert!((heights[0] / heights[1] - 3.0).abs() < 0.01, "{heights:?}");
    }

    #[test]
    fn line_chart_draws_one_polyline_per_series() {
        let svg = line_chart_with(
            "spawn time vs RSS",
            &Axis::new("RSS", Unit::Bytes).log(),
            &Axis::new("spawn time", Unit::Nanos),
            &[
                ("fork", vec![(1e6, 50_000.0), (1e9, 9e6), (1e8, 800_000.0)]),
                ("vfork", vec![(1e6, 40_000.0), (1e9, 41_000.0)]),
                ("empty", vec![]),
            ],
        );
        let doc = parse(&svg);
        let lines: Vec<_> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "polyline")
            .collect();
        assert_eq!(lines.len(), 3);
        // Points sorted by x, so the fork line rises left to right.
        let ys: Vec<f64> = lines[0]
            .attribute("points")
            .unwrap()
            .split(' ')
            .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(ys.windows(2).all(|w| w[0] > w[1]), "{ys:?}");
        assert!(texts(&doc).iter().any(|t| t.contains("MiB")));
        let plain = line_chart("t", "x", "y", &[("a", vec![(1.0, 2.0), (2.0, 3.5)])]);
        parse(&plain);
        assert!(line_chart::<&str>("t", "x", "y", &[]).contains("no data"));
    }

    #[test]
    fn log_histogram_bins_values_by_decade_tenths() {
        let mut h = LogHistogram::new();
        for v in [150_000, 155_000, 1_000_000, 0, u64::MAX] {
            h.add(v);
        }
        assert_eq!(h.total(), 5);
        let bins = h.bins();
        assert_eq!(bins.first().unwrap().lo, 10.0, "0 lands in the first bin");
        let b = bins
            .iter()
            .find(|b| b.lo <= 150_000.0 && 150_000.0 < b.hi)
            .unwrap();
        assert_eq!(b.count, 2);
        let svg = histogram(
            "spawn_to_exec",
            &Axis::new("latency", Unit::Nanos).log(),
            &bins,
            &[("p50", 160_000.0)],
        );
        let doc = parse(&svg);
        assert!(texts(&doc).iter().any(|t| t.starts_with("p50 160 µs")));
        // Three of five at or below 155 µs: the median is in that bin.
        let p50 = h.quantile(0.5).unwrap();
        assert!((141_000..=178_000).contains(&p50), "{p50}");
        assert_eq!(LogHistogram::new().quantile(0.5), None);
    }
}
