//! Client-outage distributions as an SVG: per fault a group, per system a column of runs, on a
//! log-scaled axis in ms.
//!
//! Drawn with plotters' SVG backend alone: text goes into the file as `<text>` elements for the
//! viewer to set, and the layout estimates text widths itself, so neither a font library nor a
//! system font is needed to write a plot.
use std::path::Path;

use anyhow::Context as _;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One distribution: a fault (e.g. "link"), a system (e.g. "failover (bmc)", "keepalived 10 ms"),
/// and its client outages in ms (one per run; may be empty).
pub struct Series {
    /// The fault injected, e.g. "link"; columns with the same fault form a group.
    pub fault: String,
    /// The system under test, e.g. "failover (bmc)"; it keeps its colour across groups.
    pub system: String,
    /// The client outage of each run, ms.
    pub outage_ms: Vec<f64>,
}

/// Outages below this (zero, negative, NaN) are drawn at it: the y axis is logarithmic.
const FLOOR_MS: f64 = 1.0;
/// Outages above this (infinity too) are drawn at it, so one wild value cannot flatten the rest.
const CEIL_MS: f64 = 1e7;

/// Font family of all text; the viewer picks the face.
const FAMILY: &str = "sans-serif";
/// Text sizes in px, as they appear in the SVG.
const TITLE_PX: f64 = 20.0;
const FAULT_PX: f64 = 15.0;
const LABEL_PX: f64 = 13.0;
const SMALL_PX: f64 = 12.0;
/// A generous average advance of a sans-serif glyph, in em: text is laid out by this estimate.
const CHAR_EM: f64 = 0.6;
/// Height of one line of label text.
const LINE_PX: i32 = 17;
/// Labels under a column are wrapped at spaces to lines of at most this many characters.
const WRAP_CHARS: usize = 11;
/// Height of the plotting area.
const PLOT_PX: i32 = 380;
/// Side of a legend's colour swatch.
const SWATCH_PX: f64 = 11.0;
/// Narrowest plotting area.
const MIN_PLOT_PX: f64 = 360.0;
/// Room left of the plot for the y tick labels and the axis description.
const Y_AREA_PX: i32 = 78;
/// Horizontal room between groups and at both ends of the plot, in columns.
const GROUP_GAP: f64 = 0.6;
const END_PAD: f64 = 0.35;

/// Colours given to systems in order of first appearance (Tableau 10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const INK: RGBColor = RGBColor(40, 40, 40);
const GREY: RGBColor = RGBColor(110, 110, 110);
const GRID: RGBColor = RGBColor(225, 225, 225);
const SEPARATOR: RGBColor = RGBColor(170, 170, 170);

/// Writes an SVG to `path`: for each fault a group, inside it one column per system, each run a dot
/// (jittered horizontally in a deterministic way, no randomness crate), the median as a short
/// horizontal bar and the min-max as a thin vertical line; log-scaled y axis in ms (outages range from
/// ~20 ms to ~5000 ms), labelled ticks (10, 20, 50, 100, 200, 500, 1000, 2000, 5000 as they fit),
/// x labels "system" under each column and the fault name over each group, a title given by the caller,
/// and a one-line caption under the plot given by the caller (e.g. the machine). Returns an
/// anyhow::Result<()> with the path in the error context.
///
/// Groups and the columns inside them keep the order of `series` (by first appearance of a
/// fault); each system keeps one colour throughout, named in a legend under the plot. Column
/// labels are wrapped at spaces, with the run count under them (`n = 0` for an empty series,
/// which gets a column without marks). The picture grows wider with the number of columns.
///
/// The y axis is logarithmic, so values are clamped for drawing: outages below 1 ms (zero,
/// negative or NaN) are drawn at 1 ms, above 10^7 ms (or infinite) at 10^7 ms; the median and
/// min-max are those of the clamped values. The axis spans at least 10 to 100 ms and grows to
/// the data.
pub fn outage_svg(
    path: &Path,
    title: &str,
    caption: &str,
    series: &[Series],
) -> anyhow::Result<()> {
    render(path, title, caption, series)
        .with_context(|| format!("writing the outage plot {}", path.display()))
}

/// A column: one series, where it stands on the x axis and what it shows.
struct Column<'a> {
    series: &'a Series,
    x: f64,
    colour: RGBColor,
    /// The outages as drawn, sorted.
    values: Vec<f64>,
    /// The label under the column: the system, wrapped, and the run count.
    lines: Vec<String>,
}

/// A fault's group of columns, `x0..x1` on the x axis.
struct Group<'a> {
    fault: &'a str,
    x0: f64,
    x1: f64,
}

type DrawResult = anyhow::Result<()>;

fn render(path: &Path, title: &str, caption: &str, series: &[Series]) -> DrawResult {
    // Group by fault in order of first appearance; columns keep their order inside a group.
    let mut faults: Vec<&str> = Vec::new();
    for s in series {
        if !faults.contains(&s.fault.as_str()) {
            faults.push(&s.fault);
        }
    }
    let mut systems: Vec<&str> = Vec::new();
    let mut columns: Vec<Column> = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut x = END_PAD;
    for (g, fault) in faults.iter().enumerate() {
        if g > 0 {
            x += GROUP_GAP;
        }
        let x0 = x;
        for s in series.iter().filter(|s| s.fault == *fault) {
            let i = match systems.iter().position(|n| *n == s.system) {
                Some(i) => i,
                None => {
                    systems.push(&s.system);
                    systems.len() - 1
                }
            };
            let mut values: Vec<f64> = s.outage_ms.iter().map(|&v| clamp(v)).collect();
            values.sort_by(f64::total_cmp);
            let mut lines = wrap(&s.system, WRAP_CHARS);
            lines.push(format!("n = {}", values.len()));
            columns.push(Column {
                series: s,
                x: x + 0.5,
                colour: colour(i),
                values,
                lines,
            });
            x += 1.0;
        }
        groups.push(Group { fault, x0, x1: x });
    }
    let x_end = (x + END_PAD).max(1.0);

    // Widths: a column is as wide as its widest label line (or its share of the fault name);
    // the picture as wide as the plot, the title, the caption and each legend entry need.
    let text_px = |s: &str, px: f64| s.chars().count() as f64 * px * CHAR_EM;
    let mut col_px: f64 = 72.0;
    for c in &columns {
        for l in &c.lines {
            col_px = col_px.max(text_px(l, LABEL_PX) + 14.0);
        }
    }
    for g in &groups {
        col_px = col_px.max((text_px(g.fault, FAULT_PX) + 14.0) / (g.x1 - g.x0));
    }
    // A plot of one or two columns still gets room to read.
    let col_px = col_px.max(MIN_PLOT_PX / x_end);
    let plot_w = (x_end * col_px).ceil() as i32;
    let (left_px, right_px) = (10, 24);
    let legend_w = |s: &str| (SWATCH_PX + 6.0 + text_px(s, LABEL_PX) + 22.0).ceil() as i32;
    let width = (left_px + Y_AREA_PX + plot_w + right_px)
        .max(text_px(title, TITLE_PX).ceil() as i32 + 40)
        .max(text_px(caption, SMALL_PX).ceil() as i32 + 40)
        .max(systems.iter().map(|s| legend_w(s) + 40).max().unwrap_or(0))
        .max(480);

    // The legend: a colour swatch and the full name per system, in rows that fit the width.
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let mut row_w = 0;
    for (i, s) in systems.iter().enumerate() {
        match rows.last_mut() {
            Some(row) if row_w + legend_w(s) <= width - 40 => row.push(i),
            _ => {
                rows.push(vec![i]);
                row_w = 0;
            }
        }
        row_w += legend_w(s);
    }

    // Heights, top to bottom.
    let label_lines = columns.iter().map(|c| c.lines.len()).max().unwrap_or(1) as i32;
    let title_h = 44;
    let fault_h = 30;
    let x_area_h = 10 + label_lines * LINE_PX + 8;
    let legend_h = rows.len() as i32 * LINE_PX + 6;
    let key_h = 22;
    let caption_h = 26;
    let height = title_h + fault_h + PLOT_PX + x_area_h + legend_h + key_h + caption_h;

    // The y axis: at least 10..100 ms, with room above and below the data.
    let (lo, hi) = columns
        .iter()
        .flat_map(|c| c.values.iter())
        .fold((10.0_f64, 100.0_f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (lo, hi) = (lo / 1.3, hi * 1.3);
    let ticks = ticks(lo, hi, PLOT_PX);

    let root = SVGBackend::new(path, (width as u32, height as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let top_centre = Pos::new(HPos::Center, VPos::Top);
    text(
        &root,
        title,
        (width / 2, 12),
        styled(TITLE_PX, INK, FontStyle::Bold).pos(top_centre),
    )?;

    // The plot sits centred when something else made the picture wider.
    let left = left_px + (width - (left_px + Y_AREA_PX + plot_w + right_px)) / 2;
    let area = root.margin(
        (title_h + fault_h) as u32,
        (x_area_h + legend_h + key_h + caption_h) as u32,
        left as u32,
        (width - left - Y_AREA_PX - plot_w).max(0) as u32,
    );
    let mut chart = ChartBuilder::on(&area)
        .y_label_area_size(Y_AREA_PX as u32)
        .build_cartesian_2d(0.0..x_end, (lo..hi).log_scale().with_key_points(ticks))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .bold_line_style(GRID.stroke_width(1))
        .axis_style(INK.stroke_width(1))
        .y_desc("client outage (ms, log scale)")
        .y_label_formatter(&|v| format!("{}", v.round()))
        .label_style(font(LABEL_PX, INK))
        .axis_desc_style(font(LABEL_PX, INK))
        .draw()?;
    let plot = chart.plotting_area();
    let at = |x: f64, y: f64| plot.map_coordinate(&(x, y));
    let top = at(0.0, hi).1;
    let bottom = at(0.0, lo).1;

    // Groups: a separator between neighbours, the fault name above.
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            let sx = at(g.x0 - GROUP_GAP / 2.0, lo).0;
            root.draw(&PathElement::new(
                vec![(sx, top), (sx, bottom)],
                SEPARATOR.stroke_width(1),
            ))?;
        }
        text(
            &root,
            g.fault,
            (at((g.x0 + g.x1) / 2.0, lo).0, top - 6),
            styled(FAULT_PX, INK, FontStyle::Bold).pos(Pos::new(HPos::Center, VPos::Bottom)),
        )?;
    }

    // Columns: runs, min-max line over them, median bar; the label below.
    for c in &columns {
        if let (Some(&min), Some(&max)) = (c.values.first(), c.values.last()) {
            let n = c.values.len();
            for (i, &v) in c.series.outage_ms.iter().enumerate() {
                plot.draw(&Circle::new(
                    (c.x + jitter(i, n), clamp(v)),
                    4,
                    c.colour.mix(0.55).filled(),
                ))?;
            }
            plot.draw(&PathElement::new(
                vec![(c.x, min), (c.x, max)],
                darker(c.colour).stroke_width(1),
            ))?;
            let median = if n % 2 == 1 {
                c.values[n / 2]
            } else {
                (c.values[n / 2 - 1] + c.values[n / 2]) / 2.0
            };
            plot.draw(&PathElement::new(
                vec![(c.x - 0.36, median), (c.x + 0.36, median)],
                INK.stroke_width(3),
            ))?;
        }
        let cx = at(c.x, lo).0;
        for (l, line) in c.lines.iter().enumerate() {
            let style = if l + 1 == c.lines.len() {
                font(SMALL_PX, GREY)
            } else {
                font(LABEL_PX, INK)
            };
            let y = bottom + 10 + l as i32 * LINE_PX;
            text(&root, line, (cx, y), style.pos(top_centre))?;
        }
    }
    if columns.is_empty() {
        let centre = (at(x_end / 2.0, lo).0, (top + bottom) / 2);
        text(
            &root,
            "no data",
            centre,
            font(LABEL_PX, GREY).pos(top_centre),
        )?;
    }

    // The legend, the key and the caller's caption.
    let mut y = bottom + x_area_h;
    for row in &rows {
        let row_w: i32 = row.iter().map(|&i| legend_w(systems[i])).sum();
        let mut x = (width - row_w) / 2 + 11;
        let swatch = SWATCH_PX as i32;
        for &i in row {
            let sy = y + (LINE_PX - swatch) / 2 - 1;
            root.draw(&Rectangle::new(
                [(x, sy), (x + swatch, sy + swatch)],
                colour(i).mix(0.8).filled(),
            ))?;
            let name = font(LABEL_PX, INK).pos(Pos::new(HPos::Left, VPos::Top));
            text(&root, systems[i], (x + swatch + 6, y), name)?;
            x += legend_w(systems[i]);
        }
        y += LINE_PX;
    }
    y += 6;
    text(
        &root,
        "dot: one run (spread sideways) \u{b7} bar: median \u{b7} line: min to max",
        (width / 2, y),
        font(SMALL_PX, GREY).pos(top_centre),
    )?;
    text(
        &root,
        caption,
        (width / 2, y + key_h + 2),
        font(SMALL_PX, INK).pos(top_centre),
    )?;
    root.present()?;
    Ok(())
}

/// The colour of the `i`-th system.
fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// `c` at 60 % brightness: lines over dots of colour `c`.
fn darker(c: RGBColor) -> RGBColor {
    let d = |v: u8| (u16::from(v) * 3 / 5) as u8;
    RGBColor(d(c.0), d(c.1), d(c.2))
}

/// An outage as drawn on the log axis (see [`outage_svg`]).
fn clamp(v: f64) -> f64 {
    if v.is_nan() {
        FLOOR_MS
    } else {
        v.clamp(FLOOR_MS, CEIL_MS)
    }
}

/// Horizontal offset of run `i` of `n` in its column, within ±0.28 columns: a golden-ratio
/// sequence, spread evenly and the same on every call.
fn jitter(i: usize, n: usize) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let width = if n < 6 { 0.05 * n as f64 } else { 0.28 };
    let u = (i as f64 * 0.618_033_988_749_895 + 0.5).fract();
    (u - 0.5) * 2.0 * width
}

/// The 1-2-5 ticks between `lo` and `hi`; only the powers of ten and the fives, or only the
/// powers of ten, when there is too little room for them all.
fn ticks(lo: f64, hi: f64, height_px: i32) -> Vec<f64> {
    let decades = (hi / lo).log10().max(0.1);
    let per_decade = |steps: f64| f64::from(height_px) / decades / steps;
    let steps: &[f64] = if per_decade(3.0) >= 18.0 {
        &[1.0, 2.0, 5.0]
    } else if per_decade(2.0) >= 18.0 {
        &[1.0, 5.0]
    } else {
        &[1.0]
    };
    let mut out = Vec::new();
    let mut decade = 10f64.powi(lo.log10().floor() as i32);
    while decade <= hi {
        for s in steps {
            let t = decade * s;
            if t >= lo && t <= hi {
                out.push(t);
            }
        }
        decade *= 10.0;
    }
    out
}

/// `s` wrapped at spaces into lines of at most `max` characters (a longer word stays whole).
fn wrap(s: &str, max: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in s.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= max => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    lines
}

/// A text style of `px` pixels as the SVG states it (plotters divides sizes by 1.24).
fn font(px: f64, colour: RGBColor) -> TextStyle<'static> {
    styled(px, colour, FontStyle::Normal)
}

/// [`font`] in `style`.
fn styled(px: f64, colour: RGBColor, style: FontStyle) -> TextStyle<'static> {
    (FAMILY, px * 1.24, style).into_font().color(&colour)
}

/// Draws `s` on `area` at `pos`, placed there as `style` says.
fn text(
    area: &DrawingArea<SVGBackend, Shift>,
    s: &str,
    pos: (i32, i32),
    style: TextStyle,
) -> DrawResult {
    area.draw(&Text::new(s.to_string(), pos, style))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(fault: &str, system: &str, outage_ms: &[f64]) -> Series {
        Series {
            fault: fault.into(),
            system: system.into(),
            outage_ms: outage_ms.to_vec(),
        }
    }

    #[test]
    fn plot_shows_every_series_and_run() {
        let data = [
            series("link", "failover (bmc)", &[310.0, 295.5, 402.0]),
            series("link", "keepalived 10 ms", &[48.0, 52.0]),
            series("power", "failover (bmc)", &[2900.0, 3100.0, 0.0, 4800.0]),
            series("power", "keepalived 10 ms", &[]),
            series(
                "freeze & stop",
                "failover (lease)",
                &[21.0, f64::NAN, f64::INFINITY],
            ),
        ];
        let runs: usize = data.iter().map(|s| s.outage_ms.len()).sum();
        let path = std::env::temp_dir().join(format!(
            "fo-plot-test-{}-{}.svg",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let result = outage_svg(&path, "Client outage", "lab, 2 cores", &data);
        let svg = std::fs::read_to_string(&path);
        let _ = std::fs::remove_file(&path);
        result.unwrap();
        let svg = svg.unwrap();
        for name in [
            "failover (bmc)",
            "keepalived 10 ms",
            "failover (lease)",
            "link",
            "power",
            "freeze &amp; stop",
            "Client outage",
            "lab, 2 cores",
            "n = 0",
        ] {
            assert!(svg.contains(name), "{name:?} missing from the SVG");
        }
        for tick in [">\n10\n<", ">\n100\n<", ">\n1000\n<"] {
            assert!(svg.contains(tick), "tick {tick:?} missing from the SVG");
        }
        // Every column: its wrapped label and its run count; every run: a dot.
        for s in &data {
            for line in wrap(&s.system, WRAP_CHARS) {
                assert!(
                    svg.contains(&format!(">\n{line}\n<")),
                    "label {line:?} missing"
                );
            }
        }
        assert_eq!(svg.matches(">\nn = ").count(), data.len());
        assert_eq!(svg.matches("<circle").count(), runs);
    }

    #[test]
    fn plot_without_series_or_runs() {
        let path = std::env::temp_dir().join(format!("fo-plot-empty-{}.svg", std::process::id()));
        let result = outage_svg(&path, "", "", &[]);
        let empty = std::fs::read_to_string(&path);
        let result2 = outage_svg(&path, "t", "c", &[series("link", "x", &[0.0, -3.0])]);
        let zeros = std::fs::read_to_string(&path);
        let _ = std::fs::remove_file(&path);
        result.unwrap();
        result2.unwrap();
        assert_eq!(empty.unwrap().matches("<circle").count(), 0);
        assert_eq!(zeros.unwrap().matches("<circle").count(), 2);
    }

    #[test]
    fn error_names_the_path() {
        let path = Path::new("/nonexistent-dir-for-plot/x.svg");
        let err = outage_svg(path, "t", "c", &[]).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent-dir-for-plot/x.svg"));
    }

    #[test]
    fn ticks_and_jitter() {
        assert_eq!(
            ticks(10.0 / 1.3, 5000.0 * 1.3, PLOT_PX),
            [10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]
        );
        assert_eq!(
            ticks(1.0, 1e7, 200),
            [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7]
        );
        for n in [2, 5, 40] {
            for i in 0..n {
                assert!(jitter(i, n).abs() <= 0.28);
            }
        }
        assert_eq!(wrap("keepalived 10 ms", 16), ["keepalived 10 ms"]);
        assert_eq!(
            wrap("failover (bmc) with a long name", 16),
            ["failover (bmc)", "with a long name"]
        );
    }
}
