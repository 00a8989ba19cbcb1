//! Figures for benchmark reports (SVG through plotters, PNG through resvg): bar charts (one bar
//! per run, a log-scale axis when the values span decades, as CPU 1 thread against a GPU does),
//! log-log line charts, latency percentile plots on a "nines" axis, and the tuning scatter.
//!
//! Conventions, for figures people put in papers: ticks read as numbers with units ("1 ms",
//! "20 K", never "10000.0"), legends sit beside the plot and never on the data, and series
//! colours come from the Okabe–Ito palette, which colour-blind readers can tell apart (no yellow
//! on white).

use std::path::Path;

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use encore::error::{Error, Result};

/// The Okabe–Ito colours (Okabe & Ito, "Color Universal Design"), most distinct first; its
/// yellow is left out (unreadable on white).
const OKABE_ITO: [RGBColor; 7] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(0, 0, 0),       // black
];

/// Series colour `i`, cycling through the Okabe–Ito colours above.
pub fn palette(i: usize) -> RGBColor {
    OKABE_ITO[i % OKABE_ITO.len()]
}

/// A tick label: `v` with at most three significant digits and no trailing zeros, thousands as
/// "K" and millions as "M" ("20 K", "1.5 M"), then `unit` after a space when there is one
/// ("1 ms", "0.5 ms").
pub fn tick(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let (scaled, suffix) = if v.abs() >= 1e6 {
        (v / 1e6, " M")
    } else if v.abs() >= 1e3 {
        (v / 1e3, " K")
    } else {
        (v, "")
    };
    let mut t = sig3(scaled.abs());
    if t.contains('.') {
        t = t.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    let sign = if scaled < 0.0 { "-" } else { "" };
    let unit = if unit.is_empty() {
        String::new()
    } else if suffix.is_empty() {
        format!(" {unit}")
    } else {
        unit.to_string()
    };
    format!("{sign}{t}{suffix}{unit}")
}

/// A chart axis: what it shows and the unit its ticks carry ("" for none).
pub struct Axis<'a> {
    pub label: &'a str,
    pub unit: &'a str,
}

/// Width of the legend column beside a plot.
const LEGEND_WIDTH: u32 = 210;

/// Draws a legend (a line, a marker and the name of each series) in `area`, beside the plot
/// rather than over it.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    names: &[&str],
) -> std::result::Result<(), String> {
    let font = ("sans-serif", 14).into_font().color(&BLACK);
    for (i, name) in names.iter().enumerate() {
        let y = 70 + 26 * i as i32;
        let c = palette(i);
        area.draw(&PathElement::new(vec![(8, y), (36, y)], c.stroke_width(3)))
            .and_then(|_| area.draw(&Circle::new((22, y), 4, c.filled())))
            .and_then(|_| area.draw(&Text::new(name.to_string(), (44, y - 8), font.clone())))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Draws each line of `lines` (series `i` in [`palette`] colour `i`) with its points marked.
fn draw_lines<DB, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    lines: impl Iterator<Item = Vec<(f64, f64)>>,
) -> std::result::Result<(), String>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, points) in lines.enumerate() {
        let color = palette(i);
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One bar: its label and value.
pub struct Bar {
    pub label: String,
    pub value: f64,
}

/// `v` with three significant digits (0.00685 → "0.00685", 12.34 → "12.3").
fn sig3(v: f64) -> String {
    if !(v.is_finite() && v > 0.0) {
        return format!("{v}");
    }
    let decimals = (2 - v.log10().floor() as i32).max(0) as usize;
    format!("{v:.decimals$}")
}

/// Writes a titled bar chart with labelled axes to `path` (SVG). Non-positive or non-finite
/// values are left out of a log-scale chart, never drawn as zero.
pub fn bar_chart_svg(path: &Path, title: &str, y_label: &str, bars: &[Bar]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| {
        Error::Runtime(format!("{}: drawing chart: {e}", path.display()))
    };
    let finite: Vec<&Bar> = bars
        .iter()
        .filter(|b| b.value.is_finite() && b.value > 0.0)
        .collect();
    if finite.is_empty() {
        return Err(Error::Config(format!(
            "{}: nothing to plot",
            path.display()
        )));
    }
    let lo = finite.iter().map(|b| b.value).fold(f64::INFINITY, f64::min);
    let hi = finite.iter().map(|b| b.value).fold(0.0, f64::max);
    let log = hi / lo > 20.0;
    let n = bars.len();
    let width = (160 + 130 * n as u32).max(640);
    let root = SVGBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    let x_fmt = |x: &f64| {
        let i = x.floor();
        if (x - i - 0.5).abs() < 1e-9 && i >= 0.0 && (i as usize) < labels.len() {
            labels[i as usize].clone()
        } else {
            String::new()
        }
    };
    let style = |i: usize| palette(i).filled();
    // Value labels centred over their bars.
    let value_font =
        TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    // The two y axes (log, linear) have different coordinate types; the drawing is the same.
    // `$label_y` places each value label just above its bar.
    macro_rules! draw {
        ($y_range:expr, $base:expr, $y_desc:expr, $label_y:expr) => {{
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 22))
                .margin(16)
                .x_label_area_size(48)
                .y_label_area_size(72)
                .build_cartesian_2d(0f64..n as f64, $y_range)
                .map_err(|e| err(&e))?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(2 * n + 1)
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&|v: &f64| tick(*v, ""))
                .y_desc($y_desc)
                .draw()
                .map_err(|e| err(&e))?;
            for (i, b) in bars
                .iter()
                .enumerate()
                .filter(|(_, b)| b.value.is_finite() && b.value > 0.0)
            {
                let x = i as f64;
                chart
                    .draw_series([Rectangle::new(
                        [(x + 0.15, $base), (x + 0.85, b.value)],
                        style(i),
                    )])
                    .map_err(|e| err(&e))?;
                let label_y: f64 = $label_y(b.value);
                chart
                    .draw_series([Text::new(
                        sig3(b.value),
                        (x + 0.5, label_y),
                        value_font.clone(),
                    )])
                    .map_err(|e| err(&e))?;
            }
        }};
    }
    if log {
        let y0 = 10f64.powf(lo.log10().floor()) * 0.999;
        let y1 = 10f64.powf(hi.log10().ceil() + 0.1);
        draw!(
            (y0..y1).log_scale(),
            y0,
            format!("{y_label} (log scale)"),
            |v: f64| v * 1.04
        );
    } else {
        draw!(0f64..hi * 1.15, 0.0, y_label.to_string(), |v: f64| v + hi
            * 0.01);
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// One line of a line chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Decades covering `lo..=hi` (at least one).
fn decades(lo: f64, hi: f64) -> (f64, f64) {
    let (l, h) = (lo.log10().floor(), hi.log10().ceil());
    // A hair beyond both ends, so that rounding in 10^l cannot drop the end ticks.
    (
        10f64.powf(l) * 0.999,
        10f64.powf(if h > l { h } else { l + 1.0 }) * 1.001,
    )
}

/// Writes a titled line chart (log-log axes, points marked) with the legend beside it to `path`
/// (SVG). Points with a non-positive or non-finite coordinate are left out.
pub fn line_chart_svg(
    path: &Path,
    title: &str,
    x: &Axis,
    y: &Axis,
    series: &[Series],
) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| {
        Error::Runtime(format!("{}: drawing chart: {e}", path.display()))
    };
    let ok = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && x > 0.0 && y > 0.0;
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(ok)
        .collect();
    if pts.is_empty() {
        return Err(Error::Config(format!(
            "{}: nothing to plot",
            path.display()
        )));
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, 0.0f64, f64::INFINITY, 0.0f64);
    for &(x, y) in &pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let ((x0, x1), (y0, y1)) = (decades(x0, x1), decades(y0, y1));
    let root = SVGBackend::new(path, (800 + LEGEND_WIDTH, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| err(&e))?;
    let (plot, side) = root.split_horizontally(800);
    let mut chart = ChartBuilder::on(&plot)
        .margin(16)
        .margin_right(40)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(format!("{} (log scale)", x.label))
        .y_desc(format!("{} (log scale)", y.label))
        .x_label_formatter(&|v: &f64| tick(*v, x.unit))
        .y_label_formatter(&|v: &f64| tick(*v, y.unit))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(|e| err(&e))?;
    draw_lines(
        &mut chart,
        series
            .iter()
            .map(|s| s.points.iter().copied().filter(ok).collect()),
    )
    .map_err(|e| err(&e))?;
    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    legend(&side, &names).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Percentiles a percentile plot marks on its axis.
const NINES: [(f64, &str); 6] = [
    (0.5, "50%"),
    (0.9, "90%"),
    (0.99, "99%"),
    (0.999, "99.9%"),
    (0.9999, "99.99%"),
    (0.99999, "99.999%"),
];

/// The x axis of a percentile plot: linear in "nines", ticks only at the marked percentiles,
/// labelled with them.
struct NinesAxis {
    lo: f64,
    hi: f64,
    marks: Vec<(f64, &'static str)>,
}

impl Ranged for NinesAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let f = (v - self.lo) / (self.hi - self.lo);
        limit.0 + (f * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        self.marks.iter().map(|m| m.0).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for NinesAxis {
    fn format_ext(&self, x: &f64) -> String {
        self.marks
            .iter()
            .find(|m| (m.0 - x).abs() < 1e-9)
            .map_or_else(String::new, |m| m.1.to_string())
    }
}

/// Where quantile `q` (0 ≤ q < 1) sits on a "nines" axis: −log₁₀(1 − q), so 90% is 1, 99% is
/// 2, 99.9% is 3, and the tail gets as much room as the body.
pub fn nines(q: f64) -> f64 {
    -(1.0 - q).log10()
}

/// A latency percentile plot in the HdrHistogram style: percentile on a "nines" axis (50, 90,
/// 99, 99.9 …) against latency on a log axis, one line per series of (quantile, latency)
/// points, the legend beside the plot. Quantiles outside [0.5, 1) and non-positive latencies
/// are left out (the maximum, quantile 1, has no place on this axis).
pub fn percentile_chart_svg(
    path: &Path,
    title: &str,
    latency_unit: &str,
    series: &[Series],
) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| {
        Error::Runtime(format!("{}: drawing chart: {e}", path.display()))
    };
    let ok = |&(q, v): &(f64, f64)| (0.5..1.0).contains(&q) && v.is_finite() && v > 0.0;
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(ok)
        .collect();
    if pts.is_empty() {
        return Err(Error::Config(format!(
            "{}: nothing to plot",
            path.display()
        )));
    }
    let q_hi = pts.iter().map(|p| p.0).fold(0.0, f64::max);
    let (v_lo, v_hi) = pts.iter().fold((f64::INFINITY, 0.0f64), |(l, h), p| {
        (l.min(p.1), h.max(p.1))
    });
    let marks: Vec<(f64, &'static str)> = NINES
        .iter()
        .filter(|(q, _)| *q <= q_hi.max(0.99))
        .map(|&(q, l)| (nines(q), l))
        .collect();
    let x1 = marks.last().map_or(2.0, |m| m.0) + 0.15;
    let x0 = nines(0.5) - 0.1;
    let (y0, y1) = decades(v_lo, v_hi);
    let root = SVGBackend::new(path, (800 + LEGEND_WIDTH, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| err(&e))?;
    let (plot, side) = root.split_horizontally(800);
    let axis = NinesAxis {
        lo: x0,
        hi: x1,
        marks,
    };
    let mut chart = ChartBuilder::on(&plot)
        .margin(16)
        .margin_right(40)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(axis, (y0..y1).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (log scale)")
        .y_label_formatter(&|v: &f64| tick(*v, latency_unit))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(|e| err(&e))?;
    draw_lines(
        &mut chart,
        series.iter().map(|s| {
            s.points
                .iter()
                .copied()
                .filter(ok)
                .map(|(q, v)| (nines(q), v))
                .collect()
        }),
    )
    .map_err(|e| err(&e))?;
    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    legend(&side, &names).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// One point of a [`heat_scatter_svg`] chart.
pub struct HeatPoint {
    pub x: f64,
    pub y: f64,
    /// What the colour shows.
    pub value: f64,
    /// Drawn with a black ring (e.g. the trials that reached the last rung).
    pub ring: bool,
    /// Drawn larger and keyed under the title with this label (e.g. the chosen configuration).
    pub label: Option<String>,
}

/// Viridis (matplotlib's default colour map), by five of its stops: dark blue for low values,
/// yellow for high, readable in grey and by most colour-blind readers.
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let f = t * (STOPS.len() - 1) as f64;
    let i = (f.floor() as usize).min(STOPS.len() - 2);
    let u = f - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |p: f64, q: f64| (p + (q - p) * u).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Writes a scatter chart on log-log axes to `path` (SVG), each point coloured by its value, with
/// a colour bar: for a search over two scale parameters (nDCG@10 over λ × α). `note`, a line
/// under the title, says what the rings and the labelled point mean. Points with a
/// non-positive or non-finite coordinate or value are left out.
pub fn heat_scatter_svg(
    path: &Path,
    title: &str,
    note: &str,
    x_label: &str,
    y_label: &str,
    value_label: &str,
    points: &[HeatPoint],
) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| {
        Error::Runtime(format!("{}: drawing chart: {e}", path.display()))
    };
    let pts: Vec<&HeatPoint> = points
        .iter()
        .filter(|p| {
            p.x.is_finite() && p.y.is_finite() && p.value.is_finite() && p.x > 0.0 && p.y > 0.0
        })
        .collect();
    if pts.is_empty() {
        return Err(Error::Config(format!(
            "{}: nothing to plot",
            path.display()
        )));
    }
    let range = |f: &dyn Fn(&HeatPoint) -> f64| {
        let lo = pts.iter().map(|p| f(p)).fold(f64::INFINITY, f64::min);
        let hi = pts.iter().map(|p| f(p)).fold(0.0, f64::max);
        // A little room beyond the extreme points, in log terms, so none sits on an axis.
        let (l, h) = (lo.log10() - 0.15, hi.log10() + 0.15);
        (
            10f64.powf(l),
            10f64.powf(if h > l + 0.5 { h } else { l + 0.5 }),
        )
    };
    let ((x0, x1), (y0, y1)) = (range(&|p| p.x), range(&|p| p.y));
    let v_lo = pts.iter().map(|p| p.value).fold(f64::INFINITY, f64::min);
    let v_hi = pts
        .iter()
        .map(|p| p.value)
        .fold(f64::NEG_INFINITY, f64::max);
    let span = if v_hi > v_lo { v_hi - v_lo } else { 1.0 };
    let colour = |v: f64| viridis((v - v_lo) / span);
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| err(&e))?;
    // Under the title: the note, then a key for each labelled point (its marker and label), so
    // no label is drawn over the points.
    let labels: Vec<&HeatPoint> = pts.iter().copied().filter(|p| p.label.is_some()).collect();
    let (note_area, root) = root.split_vertically(22 + 22 * labels.len() as u32);
    let grey = ("sans-serif", 14).into_font().color(&RGBColor(60, 60, 60));
    note_area
        .draw(&Text::new(note.to_string(), (16, 2), grey.clone()))
        .map_err(|e| err(&e))?;
    for (i, p) in labels.iter().enumerate() {
        let y = 22 + 22 * i as i32 + 8;
        note_area
            .draw(&Circle::new((26, y), 9, colour(p.value).filled()))
            .and_then(|_| note_area.draw(&Circle::new((26, y), 10, BLACK.stroke_width(2))))
            .and_then(|_| {
                note_area.draw(&Text::new(
                    p.label.clone().unwrap_or_default(),
                    (44, y - 8),
                    grey.clone(),
                ))
            })
            .map_err(|e| err(&e))?;
    }
    let (plot, bar) = root.split_horizontally(770);
    let mut chart = ChartBuilder::on(&plot)
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(format!("{x_label} (log scale)"))
        .y_desc(format!("{y_label} (log scale)"))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(|e| err(&e))?;
    // Plain points first, ringed ones over them, labelled ones on top.
    let mut order: Vec<&&HeatPoint> = pts.iter().collect();
    order.sort_by_key(|p| (p.label.is_some(), p.ring));
    for p in order {
        let r = if p.label.is_some() { 9 } else { 6 };
        chart
            .draw_series([Circle::new((p.x, p.y), r, colour(p.value).filled())])
            .map_err(|e| err(&e))?;
        if p.ring || p.label.is_some() {
            chart
                .draw_series([Circle::new((p.x, p.y), r + 1, BLACK.stroke_width(2))])
                .map_err(|e| err(&e))?;
        }
    }
    // The colour bar: value on a linear axis, the gradient in 40 bands.
    let mut cb = ChartBuilder::on(&bar)
        .margin_top(40)
        .margin_bottom(64)
        .margin_right(8)
        .y_label_area_size(64)
        .caption(value_label, ("sans-serif", 14))
        .build_cartesian_2d(0f64..1.0, v_lo..(v_lo + span))
        .map_err(|e| err(&e))?;
    cb.configure_mesh()
        .disable_x_mesh()
        .disable_y_mesh()
        .x_labels(0)
        .y_labels(6)
        .y_label_formatter(&|v| format!("{v:.3}"))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| err(&e))?;
    let bands = 40;
    cb.draw_series((0..bands).map(|i| {
        let a = v_lo + span * i as f64 / bands as f64;
        let b = v_lo + span * (i + 1) as f64 / bands as f64;
        Rectangle::new([(0.0, a), (1.0, b)], colour((a + b) / 2.0).filled())
    }))
    .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Environment variable naming an extra font folder for the PNG figures.
pub const FONT_DIR_ENV: &str = "ENCORE_FONT_DIR";

/// Renders the SVG at `svg` to a PNG at `png` (resvg, pure Rust) at `scale` × its size. Text
/// uses the system's fonts and those in `$ENCORE_FONT_DIR`; returns whether any were found (without them the PNG has no text,
/// and the caller should say so).
pub fn svg_to_png(svg: &Path, png: &Path, scale: f32) -> Result<bool> {
    use resvg::{tiny_skia, usvg};
    let data = std::fs::read(svg).map_err(|e| Error::io(svg, e))?;
    let mut opt = usvg::Options::default();
    let db = opt.fontdb_mut();
    db.load_system_fonts();
    // Hosts without system fonts (a bare GPU node) can point at a folder of .ttf/.otf files.
    if let Some(dir) = std::env::var_os(FONT_DIR_ENV) {
        db.load_fonts_dir(dir);
    }
    // plotters writes font-family="sans-serif"; fontdb maps that to Arial unless told otherwise,
    // which most Linux hosts lack. Use a sans face that is installed.
    let family = [
        "DejaVu Sans",
        "Liberation Sans",
        "Noto Sans",
        "FreeSans",
        "Arial",
    ]
    .into_iter()
    .find(|want| {
        db.faces()
            .any(|f| f.families.iter().any(|(n, _)| n == want))
    })
    .map(str::to_string)
    .or_else(|| {
        db.faces()
            .next()
            .and_then(|f| f.families.first().map(|(n, _)| n.clone()))
    });
    let fonts = family.is_some();
    if let Some(f) = family {
        db.set_sans_serif_family(f);
    }
    let tree = usvg::Tree::from_data(&data, &opt)
        .map_err(|e| Error::Runtime(format!("{}: {e}", svg.display())))?;
    let size = tree.size().to_int_size().scale_by(scale).ok_or_else(|| {
        Error::Config(format!(
            "{}: cannot scale the image by {scale}",
            svg.display()
        ))
    })?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| Error::Runtime(format!("{}: empty image", svg.display())))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    let bytes = pixmap
        .encode_png()
        .map_err(|e| Error::Runtime(format!("{}: PNG encoding: {e}", png.display())))?;
    encore::util::write_atomic(png, &bytes)?;
    Ok(fonts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_titled_labelled_and_log_scaled_when_values_span_decades() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.svg");
        let bars = vec![
            Bar {
                label: "cpu (1T) cg".into(),
                value: 40.0,
            },
            Bar {
                label: "gpu cg".into(),
                value: 0.12,
            },
        ];
        bar_chart_svg(&path, "Seconds per iteration", "seconds", &bars).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        for text in [
            "Seconds per iteration",
            "seconds (log scale)",
            "cpu (1T) cg",
            "gpu cg",
            "0.120",
        ] {
            assert!(svg.contains(text), "missing {text:?}");
        }
        let nothing = [Bar {
            label: "x".into(),
            value: f64::NAN,
        }];
        assert!(bar_chart_svg(&dir.path().join("n.svg"), "t", "s", &nothing).is_err());
    }

    /// A folder for a test's figures: `$ENCORE_KEEP_FIGURES/<name>` when that is set (to look
    /// at the PNGs), else a temporary one.
    fn figures(name: &str) -> (Option<tempfile::TempDir>, std::path::PathBuf) {
        match std::env::var_os("ENCORE_KEEP_FIGURES") {
            Some(d) => {
                let p = std::path::PathBuf::from(d).join(name);
                std::fs::create_dir_all(&p).unwrap();
                (None, p)
            }
            None => {
                let t = tempfile::tempdir().unwrap();
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        }
    }

    /// Every `<text>` element of `svg`: (its x, its content trimmed).
    fn texts(svg: &str) -> Vec<(f64, String)> {
        svg.split("<text")
            .skip(1)
            .map(|t| {
                let x = t.find(" x=\"").unwrap() + 4;
                let x: f64 = t[x..x + t[x..].find('"').unwrap()].parse().unwrap();
                let body = &t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()];
                (x, body.trim().to_string())
            })
            .collect()
    }

    /// The x coordinate of the `<text>` element whose content is `content`.
    fn text_x(svg: &str, content: &str) -> f64 {
        texts(svg)
            .into_iter()
            .find(|t| t.1 == content)
            .unwrap_or_else(|| panic!("no text {content:?}"))
            .0
    }

    fn has_text(svg: &str, content: &str) -> bool {
        texts(svg).iter().any(|t| t.1 == content)
    }

    #[test]
    fn ticks_read_as_numbers_with_units() {
        assert_eq!(tick(1.0, "ms"), "1 ms");
        assert_eq!(tick(0.5, "ms"), "0.5 ms");
        assert_eq!(tick(20_000.0, ""), "20 K");
        assert_eq!(tick(10_000.0, ""), "10 K");
        assert_eq!(tick(1_500_000.0, ""), "1.5 M");
        assert_eq!(tick(100.0, ""), "100");
        assert_eq!(tick(0.012, "s"), "0.012 s");
        assert_eq!(tick(2_500.0, "ms"), "2.5 Kms");
        for v in [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 0.1] {
            assert!(!tick(v, "").contains(".0"), "{v}: {}", tick(v, ""));
        }
    }

    #[test]
    fn the_nines_axis_gives_the_tail_as_much_room_as_the_body() {
        assert!((nines(0.9) - 1.0).abs() < 1e-12);
        assert!((nines(0.99) - 2.0).abs() < 1e-12);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn percentile_and_line_charts_keep_their_legends_beside_the_data() {
        let (_keep, dir) = figures("percentile");
        let dist = |scale: f64| {
            [0.5f64, 0.9, 0.99, 0.999, 0.9999, 1.0]
                .iter()
                .map(|&q| (q, scale * (1.0 + 20.0 * q.powi(40))))
                .collect::<Vec<_>>()
        };
        let series = vec![
            Series {
                name: "gpu".into(),
                points: dist(0.3),
            },
            Series {
                name: "cpu (16 threads)".into(),
                points: dist(0.5),
            },
        ];
        let p = dir.join("latency.svg");
        percentile_chart_svg(
            &p,
            "Latency by percentile at 20 K requests/s",
            "ms",
            &series,
        )
        .unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        for mark in ["50%", "90%", "99%", "99.9%", "99.99%"] {
            assert!(has_text(&svg, mark), "no {mark} tick");
        }
        assert!(
            !has_text(&svg, "100%"),
            "the maximum has no place on a nines axis"
        );
        assert!(
            texts(&svg).iter().any(|t| t.1.ends_with(" ms")),
            "latency ticks carry their unit"
        );
        // The legend is right of the 800-pixel plot, so it cannot cover a line.
        assert!(text_x(&svg, "cpu (16 threads)") > 800.0);
        // Okabe–Ito blue and vermillion, not plotters' default palette.
        let svg_l = svg.to_ascii_uppercase();
        assert!(svg_l.contains("#0072B2") && svg_l.contains("#D55E00"));
        svg_to_png(&p, &dir.join("latency.png"), 1.5).unwrap();

        let rates = Series {
            name: "gpu".into(),
            points: vec![(1e3, 0.3), (1e4, 0.35), (5e4, 0.6), (1e5, 9.0)],
        };
        let p = dir.join("p95.svg");
        line_chart_svg(
            &p,
            "p95 latency against request rate",
            &Axis {
                label: "requests per second (offered)",
                unit: "",
            },
            &Axis {
                label: "p95 latency",
                unit: "ms",
            },
            &[rates],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(has_text(&svg, "10 K"), "rate ticks in K");
        assert!(
            texts(&svg).iter().all(|t| !t.1.contains(".0")),
            "a tick with .0"
        );
        assert!(text_x(&svg, "gpu") > 800.0);
        svg_to_png(&p, &dir.join("p95.png"), 1.5).unwrap();
    }

    #[test]
    fn bar_values_are_centred_over_their_bars() {
        let (_keep, dir) = figures("bars");
        let p = dir.join("train.svg");
        let bars = vec![
            Bar {
                label: "cpu (1T) cg".into(),
                value: 40.0,
            },
            Bar {
                label: "gpu cg".into(),
                value: 0.121,
            },
            Bar {
                label: "implicit gpu".into(),
                value: 0.346,
            },
        ];
        bar_chart_svg(&p, "ALS training: seconds per iteration", "seconds", &bars).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        // Each value's label and its bar's name share a centre line.
        for (value, name) in [("0.121", "gpu cg"), ("0.346", "implicit gpu")] {
            assert!(
                (text_x(&svg, value) - text_x(&svg, name)).abs() < 2.0,
                "{value} is not over {name}"
            );
        }
        svg_to_png(&p, &dir.join("train.png"), 1.5).unwrap();
    }

    #[test]
    fn heat_scatter_charts_have_their_labels_and_a_colour_per_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.svg");
        let pts: Vec<HeatPoint> = [(0.1, 1.0, 0.2), (10.0, 3.0, 0.3), (30.0, 1.0, 0.35)]
            .iter()
            .map(|&(x, y, value)| HeatPoint {
                x,
                y,
                value,
                ring: x > 1.0,
                label: (x == 30.0).then(|| "best".to_string()),
            })
            .collect();
        heat_scatter_svg(
            &path,
            "nDCG@10 over λ and α",
            "ringed: the finalists",
            "λ",
            "α",
            "nDCG@10",
            &pts,
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        for text in [
            "nDCG@10 over λ and α",
            "ringed: the finalists",
            "λ (log scale)",
            "α (log scale)",
            "best",
        ] {
            assert!(svg.contains(text), "missing {text:?}");
        }
        // The lowest value is viridis' dark end, the highest its yellow end.
        assert!(svg.contains("#440154"), "no dark point");
        assert!(svg.contains("#FDE725"), "no bright point");
        assert!(heat_scatter_svg(&path, "t", "n", "x", "y", "v", &[]).is_err());
    }
}
