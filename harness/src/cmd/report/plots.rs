//! SVG line charts (plotters, SVG backend only): a `Chart` description in, an .svg file out.
//! Axes are linear, logarithmic, or HdrHistogram's percentile axis (log of 1/(1-q)); every
//! chart prints the files it was drawn from along its bottom edge.

use std::path::Path;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;

use super::ReportError;
use super::hgrm::percentile_label;

const SIZE: (u32, u32) = (1000, 560);
/// Width of the legend panel right of the plot.
const LEGEND_W: u32 = 240;
/// Footer lines are wrapped at this many characters (the naive font's width estimate).
const FOOTER_CHARS: usize = 150;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Axis {
    Linear,
    Log,
    /// x = 1/(1-q) on a log scale, labelled as percentiles.
    Percentile,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stroke {
    Solid,
    Dashed,
    /// Line with a dot on each point (few points: a sweep, a grid).
    Dots,
    /// Dots only (sparse samples a line would misrepresent).
    Points,
    /// Rings only: the companion of `Points` (p50 beside p99).
    Rings,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    /// A non-finite y breaks the line there (an empty time bin).
    pub points: Vec<(f64, f64)>,
    pub stroke: Stroke,
    /// Series sharing a colour (p50 and p99 of one run) share this index.
    pub colour: usize,
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub x_axis: Axis,
    pub y_axis: Axis,
    pub series: Vec<Series>,
    /// Horizontal reference lines (an SLO), with their label.
    pub hlines: Vec<(f64, String)>,
    /// Marked points (a knee), with their label.
    pub marks: Vec<((f64, f64), String)>,
    /// Where the numbers come from, printed under the chart.
    pub sources: Vec<String>,
}

/// Numbers on axes: no trailing zeros, thousands kept short.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        let m = format!("{:.3}", v / 1e6);
        format!("{}M", m.trim_end_matches('0').trim_end_matches('.'))
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        // Enough decimals for the first significant digit and one more.
        let decimals = (-a.log10()).ceil() as usize + 1;
        format!("{v:.decimals$}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// The drawn range of one axis: positive values only on log axes, a margin above the top.
fn range(axis: Axis, values: impl Iterator<Item = f64>) -> (f64, f64) {
    let vals: Vec<f64> = values
        .filter(|v| v.is_finite() && (axis == Axis::Linear || *v > 0.0))
        .collect();
    let max = vals.iter().copied().fold(f64::MIN, f64::max);
    let min = vals.iter().copied().fold(f64::MAX, f64::min);
    if vals.is_empty() {
        return if axis == Axis::Linear {
            (0.0, 1.0)
        } else {
            (1.0, 10.0)
        };
    }
    match axis {
        Axis::Linear => (min.min(0.0), if max > 0.0 { max * 1.08 } else { 1.0 }),
        Axis::Log => (min / 1.5, (max * 1.5).max(min * 10.0)),
        Axis::Percentile => (1.0, 10f64.powf((max.log10() - 1e-9).ceil()).max(100.0)),
    }
}

fn colour(i: usize) -> RGBColor {
    // Distinct on white, in a fixed order so a syncer keeps its colour within a chart.
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    C[i % C.len()]
}

/// Draws `chart` into the SVG file `path`.
pub fn draw(path: &Path, chart: &Chart) -> Result<(), ReportError> {
    let fail = |e: &dyn std::fmt::Display| ReportError::Plot {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let footer_lines = wrap(&chart.sources, FOOTER_CHARS);
    let (upper, footer) = root.split_vertically(SIZE.1 - 8 - 16 * footer_lines.len() as u32);
    for (i, s) in footer_lines.iter().enumerate() {
        footer
            .draw(&Text::new(
                s.clone(),
                (10, 2 + 16 * i as i32),
                ("sans-serif", 12).into_font().color(&RGBColor(90, 90, 90)),
            ))
            .map_err(|e| fail(&e))?;
    }
    let (area, legend_area) = upper.split_horizontally(SIZE.0 - LEGEND_W);
    legend(&legend_area, chart).map_err(|e| fail(&e))?;
    let xs = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(chart.marks.iter().map(|m| m.0.0));
    let ys = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .chain(chart.hlines.iter().map(|h| h.0))
        .chain(chart.marks.iter().map(|m| m.0.1));
    let (x0, x1) = range(chart.x_axis, xs);
    let (y0, y1) = range(chart.y_axis, ys);
    let mut builder = ChartBuilder::on(&area);
    builder
        .caption(&chart.title, ("sans-serif", 20))
        .margin(12)
        .margin_right(28)
        .x_label_area_size(44)
        .y_label_area_size(70);
    // plotters types a chart by its axes: one branch per combination, one generic body.
    let drawn = match (chart.x_axis, chart.y_axis) {
        (Axis::Linear, Axis::Linear) => builder
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| PlotFailure(fail(&e).to_string()))
            .and_then(|mut c| body(&mut c, chart)),
        (Axis::Linear, _) => builder
            .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
            .map_err(|e| PlotFailure(fail(&e).to_string()))
            .and_then(|mut c| body(&mut c, chart)),
        (_, Axis::Linear) => builder
            .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
            .map_err(|e| PlotFailure(fail(&e).to_string()))
            .and_then(|mut c| body(&mut c, chart)),
        (_, _) => builder
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(|e| PlotFailure(fail(&e).to_string()))
            .and_then(|mut c| body(&mut c, chart)),
    };
    drawn.map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}

/// Source lines broken at ", " so none is longer than `width` characters.
fn wrap(lines: &[String], width: usize) -> Vec<String> {
    let mut out = Vec::new();
    for line in lines {
        let mut cur = String::new();
        for (i, part) in line.split(", ").enumerate() {
            let piece = if i == 0 {
                part.to_string()
            } else {
                format!(", {part}")
            };
            if !cur.is_empty() && cur.len() + piece.len() > width {
                out.push(std::mem::take(&mut cur));
                cur = piece.trim_start_matches(", ").to_string();
            } else {
                cur.push_str(&piece);
            }
        }
        out.push(cur);
    }
    out
}

/// The legend, drawn by hand beside the plot (plotters' own box covers the lines): a
/// sample of each series' stroke and its label.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    chart: &Chart,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let font = ("sans-serif", 13).into_font();
    let mut y = 50;
    let grey = ShapeStyle::from(&RGBColor(120, 120, 120)).stroke_width(1);
    let mut entries: Vec<(ShapeStyle, Stroke, String)> = chart
        .hlines
        .iter()
        .map(|(_, l)| (grey, Stroke::Dashed, l.clone()))
        .collect();
    entries.extend(chart.series.iter().map(|s| {
        let style = ShapeStyle::from(&colour(s.colour)).stroke_width(2);
        (style, s.stroke, s.label.clone())
    }));
    for (style, stroke, label) in entries {
        match stroke {
            Stroke::Dashed => {
                for x in [4, 14, 24] {
                    area.draw(&PathElement::new([(x, y), (x + 6, y)], style))?;
                }
            }
            Stroke::Points => area.draw(&Circle::new((17, y), 3, style.filled()))?,
            Stroke::Rings => area.draw(&Circle::new((17, y), 4, style.stroke_width(1)))?,
            _ => area.draw(&PathElement::new([(4, y), (30, y)], style))?,
        }
        if stroke == Stroke::Dots {
            area.draw(&Circle::new((17, y), 3, style.filled()))?;
        }
        area.draw(&Text::new(label, (38, y - 7), font.clone()))?;
        y += 20;
    }
    Ok(())
}

/// Runs of finite points: a non-finite y ends one line and starts the next.
fn segments(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    points
        .split(|p| !p.1.is_finite())
        .filter(|s| !s.is_empty())
        .map(<[(f64, f64)]>::to_vec)
        .collect()
}

fn axis_label(axis: Axis, v: f64) -> String {
    match axis {
        Axis::Percentile => percentile_label(v),
        _ => fmt_num(v),
    }
}

/// A drawing step plotters refused, as its (backend-generic) error prints.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PlotFailure(String);

fn body<'a, X, Y>(
    c: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    chart: &Chart,
) -> Result<(), PlotFailure>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let e = |e: &dyn std::fmt::Display| PlotFailure(e.to_string());
    let x_fmt = |v: &f64| axis_label(chart.x_axis, *v);
    let y_fmt = |v: &f64| axis_label(chart.y_axis, *v);
    let x_labels = if chart.x_axis == Axis::Percentile {
        7
    } else {
        10
    };
    c.configure_mesh()
        .x_desc(&chart.x_desc)
        .y_desc(&chart.y_desc)
        .x_labels(x_labels)
        .y_labels(8)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|x| e(&x))?;
    let (x_lo, x_hi) = (c.x_range().start, c.x_range().end);
    // Their labels go in the legend.
    let style = ShapeStyle::from(&RGBColor(120, 120, 120)).stroke_width(1);
    for (value, _) in &chart.hlines {
        c.draw_series(DashedLineSeries::new(
            [(x_lo, *value), (x_hi, *value)],
            6,
            4,
            style,
        ))
        .map_err(|x| e(&x))?;
    }
    for s in &chart.series {
        let style = ShapeStyle::from(&colour(s.colour)).stroke_width(2);
        for seg in segments(&s.points) {
            match s.stroke {
                Stroke::Solid | Stroke::Dots => {
                    c.draw_series(LineSeries::new(seg.clone(), style))
                        .map_err(|x| e(&x))?;
                }
                Stroke::Dashed => {
                    c.draw_series(DashedLineSeries::new(
                        seg.clone(),
                        5,
                        4,
                        style.stroke_width(1),
                    ))
                    .map_err(|x| e(&x))?;
                }
                Stroke::Points | Stroke::Rings => {}
            }
            if matches!(s.stroke, Stroke::Dots | Stroke::Points) {
                c.draw_series(seg.iter().map(|p| Circle::new(*p, 3, style.filled())))
                    .map_err(|x| e(&x))?;
            }
            if s.stroke == Stroke::Rings {
                c.draw_series(
                    seg.iter()
                        .map(|p| Circle::new(*p, 4, style.stroke_width(1))),
                )
                .map_err(|x| e(&x))?;
            }
        }
    }
    for ((x, y), label) in &chart.marks {
        let style = ShapeStyle::from(&BLACK).stroke_width(2);
        c.draw_series([Cross::new((*x, *y), 8, style)])
            .map_err(|x| e(&x))?;
        c.draw_series([Text::new(
            label.clone(),
            (*x, *y),
            ("sans-serif", 14).into_font().color(&BLACK),
        )])
        .map_err(|x| e(&x))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_short() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(0.25), "0.25");
        assert_eq!(fmt_num(0.001), "0.001");
        assert_eq!(fmt_num(0.0316), "0.032");
        assert_eq!(fmt_num(2.5), "2.5");
        assert_eq!(fmt_num(16384.0), "16k");
        assert_eq!(fmt_num(1_000_000.0), "1M");
        assert_eq!(fmt_num(1_500_000.0), "1.5M");
    }

    #[test]
    fn empty_bins_break_lines_and_sources_wrap() {
        let nan = f64::NAN;
        let segs = segments(&[(0.0, 1.0), (1.0, 2.0), (2.0, nan), (3.0, 4.0), (4.0, nan)]);
        assert_eq!(segs, vec![vec![(0.0, 1.0), (1.0, 2.0)], vec![(3.0, 4.0)]]);
        let lines = wrap(&["from d/: aaaa, bbbb, cccc".into()], 16);
        assert_eq!(lines, ["from d/: aaaa", "bbbb, cccc"]);
    }

    #[test]
    fn ranges_fit_the_data() {
        assert_eq!(range(Axis::Linear, [2.0, 10.0].into_iter()), (0.0, 10.8));
        assert_eq!(
            range(Axis::Percentile, [1.0, 250.0].into_iter()),
            (1.0, 1000.0)
        );
        let (lo, hi) = range(Axis::Log, [0.0, 4.0, 40.0].into_iter());
        assert!(lo > 0.0 && lo < 4.0 && hi > 40.0, "{lo} {hi}");
    }
}
