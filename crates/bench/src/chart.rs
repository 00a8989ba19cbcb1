//! Bar charts for benchmark reports (SVG through plotters): one bar per run, a log-scale axis
//! when the values span decades (CPU 1 thread against a GPU does).

use std::path::Path;

use plotters::prelude::*;

use encore::error::{Error, Result};

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
    let style = |i: usize| Palette99::pick(i).filled();
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
                        (x + 0.2, label_y),
                        ("sans-serif", 14),
                    )])
                    .map_err(|e| err(&e))?;
            }
        }};
    }
    if log {
        let y0 = 10f64.powf(lo.log10().floor());
        let y1 = 10f64.powf(hi.log10().ceil() + 0.1);
        draw!(
            (y0..y1).log_scale(),
            y0,
            format!("{y_label} (log scale)"),
            |v: f64| v * 1.15
        );
    } else {
        draw!(0f64..hi * 1.15, 0.0, y_label.to_string(), |v: f64| v + hi
            * 0.03);
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// One line of a line chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Writes a titled line chart (log-log axes, points marked) with a legend to `path` (SVG).
/// Points with a non-positive or non-finite coordinate are left out.
pub fn line_chart_svg(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
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
    let pad = |lo: f64, hi: f64| {
        let (l, h) = (lo.log10().floor(), hi.log10().ceil());
        (10f64.powf(l), 10f64.powf(if h > l { h } else { l + 1.0 }))
    };
    let ((x0, x1), (y0, y1)) = (pad(x0, x1), pad(y0, y1));
    let root = SVGBackend::new(path, (800, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(format!("{x_label} (log scale)"))
        .y_desc(format!("{y_label} (log scale)"))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = s.points.iter().copied().filter(ok).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
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
