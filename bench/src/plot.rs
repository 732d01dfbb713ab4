//! SVG plots of labelled series: cumulative distributions, values in trial
//! order, and bars with confidence-interval whiskers.
//!
//! Plotters draws through its SVG backend only. Built without its `ttf`
//! feature, it estimates text widths and writes labels as SVG `<text>`
//! elements in the generic "sans-serif" family, so drawing needs no font
//! files or fontconfig. The viewer picks the font, so label placement is
//! approximate.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::ReportError;

const SIZE_PIXELS: (u32, u32) = (960, 600);
const FONT: &str = "sans-serif";
/// Maximum points of an empirical distribution curve.
const CDF_POINTS: usize = 2_000;

/// A labelled series of `(x, y)` points.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points in drawing order.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// The empirical cumulative distribution of `samples`: points
    /// `(value, fraction of samples at or below it)`, thinned to at most
    /// 2000 points spread evenly over the fractions.
    pub fn empirical_cdf(label: impl Into<String>, samples: &[f64]) -> Series {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let count = sorted.len();
        let step = count.div_ceil(CDF_POINTS).max(1);
        let mut points: Vec<(f64, f64)> = (step - 1..count)
            .step_by(step)
            .map(|index| (sorted[index], (index + 1) as f64 / count as f64))
            .collect();
        if let Some(&last) = sorted.last() {
            if points.last().map(|point| point.1) != Some(1.0) {
                points.push((last, 1.0));
            }
        }
        Series {
            label: label.into(),
            points,
        }
    }

    /// Values placed at their positions in a sequence (such as the order in
    /// which trials ran), for [`write_order_svg`].
    pub fn in_order(label: impl Into<String>, values: impl IntoIterator<Item = (usize, f64)>) -> Series {
        Series {
            label: label.into(),
            points: values
                .into_iter()
                .map(|(position, value)| (position as f64, value))
                .collect(),
        }
    }
}

/// A labelled bar with a confidence interval.
#[derive(Clone, Debug, PartialEq)]
pub struct BarWithInterval {
    /// Category label under the bar.
    pub label: String,
    /// Bar height.
    pub value: f64,
    /// Lower end of the whisker.
    pub low: f64,
    /// Upper end of the whisker.
    pub high: f64,
}

/// Draws cumulative distribution curves (from [`Series::empirical_cdf`] or a
/// histogram's cumulative points), with the x axis cut at `x_limit` when
/// given so that a few huge outliers do not squash the curves.
///
/// # Errors
/// [`ReportError::Plot`] when the file cannot be written.
pub fn write_cdf_svg(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[Series],
    x_limit: Option<f64>,
) -> Result<(), ReportError> {
    let (x_low, x_high) = x_range(series, x_limit);
    draw(path, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(x_low..x_high, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("fraction at or below")
            .x_label_formatter(&|x| format_tick(*x, x_high - x_low))
            .label_style((FONT, 14))
            .draw()?;
        for (index, one) in series.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            let points = one.points.iter().copied().filter(|point| point.0 <= x_high);
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(one.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// Draws values against their position in a sequence, one line with markers
/// per series.
///
/// # Errors
/// [`ReportError::Plot`] when the file cannot be written.
pub fn write_order_svg(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<(), ReportError> {
    let (x_low, x_high) = x_range(series, None);
    let (y_low, y_high) = padded_range(series.iter().flat_map(|one| one.points.iter().map(|point| point.1)));
    draw(path, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(x_low - 0.5..x_high + 0.5, y_low..y_high)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format_tick(*y, y_high - y_low))
            .label_style((FONT, 14))
            .draw()?;
        for (index, one) in series.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            chart
                .draw_series(LineSeries::new(one.points.iter().copied(), color.stroke_width(1)))?
                .label(one.label.as_str())
                .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
            chart.draw_series(
                one.points
                    .iter()
                    .map(|&point| Circle::new(point, 4, color.filled())),
            )?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// Draws one bar per category with a whisker from `low` to `high`. Bars may
/// be negative, and the y axis always includes 0.
///
/// # Errors
/// [`ReportError::Plot`] when the file cannot be written.
pub fn write_bars_svg(
    path: &Path,
    title: &str,
    y_label: &str,
    bars: &[BarWithInterval],
) -> Result<(), ReportError> {
    let values = bars
        .iter()
        .flat_map(|bar| [bar.value, bar.low, bar.high])
        .chain([0.0]);
    let (y_low, y_high) = padded_range(values);
    let labels: Vec<String> = bars.iter().map(|bar| bar.label.clone()).collect();
    let count = bars.len().max(1) as f64;
    draw(path, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5..count - 0.5, y_low..y_high)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len().max(1))
            .x_label_formatter(&|x| category_label(&labels, *x))
            .y_label_formatter(&|y| format_tick(*y, y_high - y_low))
            .y_desc(y_label)
            .label_style((FONT, 14))
            .draw()?;
        let bar_color = Palette99::pick(0).to_rgba();
        chart.draw_series(bars.iter().enumerate().map(|(index, bar)| {
            let x = index as f64;
            Rectangle::new([(x - 0.3, 0.0), (x + 0.3, bar.value)], bar_color.mix(0.6).filled())
        }))?;
        for (index, bar) in bars.iter().enumerate() {
            let x = index as f64;
            let whisker = BLACK.stroke_width(2);
            chart.draw_series([
                PathElement::new(vec![(x, bar.low), (x, bar.high)], whisker),
                PathElement::new(vec![(x - 0.1, bar.low), (x + 0.1, bar.low)], whisker),
                PathElement::new(vec![(x - 0.1, bar.high), (x + 0.1, bar.high)], whisker),
            ])?;
        }
        chart.draw_series([PathElement::new(vec![(-0.5, 0.0), (count - 0.5, 0.0)], BLACK.stroke_width(1))])?;
        Ok(())
    })
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(
    path: &Path,
    content: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> DrawResult,
) -> Result<(), ReportError> {
    let plot_error = |message: String| ReportError::Plot {
        path: path.to_path_buf(),
        message,
    };
    let root = SVGBackend::new(path, SIZE_PIXELS).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|error| plot_error(error.to_string()))?;
    content(&root).map_err(|error| plot_error(error.to_string()))?;
    root.present()
        .map_err(|error| plot_error(error.to_string()))
}

type Chart<'a> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn draw_legend(chart: &mut Chart<'_>, position: SeriesLabelPosition) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Formats an axis value with as many decimals as an axis spanning `span`
/// needs: none from a span of 20 up.
fn format_tick(value: f64, span: f64) -> String {
    let decimals = if span >= 20.0 {
        0
    } else if span >= 2.0 {
        1
    } else {
        3
    };
    format!("{value:.decimals$}")
}

/// Label of the category nearest to `x`, or nothing between categories.
fn category_label(labels: &[String], x: f64) -> String {
    let nearest = x.round();
    if (x - nearest).abs() > 0.01 || nearest < 0.0 {
        return String::new();
    }
    labels.get(nearest as usize).cloned().unwrap_or_default()
}

/// The x range of every point, cut at `limit`; a degenerate range widens to
/// a width of 1.
fn x_range(series: &[Series], limit: Option<f64>) -> (f64, f64) {
    let xs = series.iter().flat_map(|one| one.points.iter().map(|point| point.0));
    let (low, high) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), x| {
        (low.min(x), high.max(x))
    });
    let high = limit.map_or(high, |limit| high.min(limit));
    if !(low.is_finite() && high.is_finite()) {
        return (0.0, 1.0);
    }
    if high <= low {
        return (low - 0.5, low + 0.5);
    }
    (low, high)
}

/// The range of `values` with 5% padding on each side.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (low, high) = values
        .filter(|value| value.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| {
            (low.min(value), high.max(value))
        });
    if !(low.is_finite() && high.is_finite()) {
        return (0.0, 1.0);
    }
    let padding = ((high - low) * 0.05).max(high.abs().max(low.abs()) * 1e-3).max(1e-9);
    (low - padding, high + padding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn temporary_file(name: &str) -> std::path::PathBuf {
        let directory = std::env::temp_dir().join(format!("bench-plot-test-{}", std::process::id()));
        fs::create_dir_all(&directory).expect("temporary directory");
        directory.join(name)
    }

    #[test]
    fn empirical_cdf_is_monotonic_and_thinned() {
        let samples: Vec<f64> = (0..10_000).rev().map(f64::from).collect();
        let series = Series::empirical_cdf("weak", &samples);
        assert!(series.points.len() <= CDF_POINTS + 1);
        assert!(series.points.windows(2).all(|pair| pair[0].0 <= pair[1].0 && pair[0].1 < pair[1].1));
        assert_eq!(series.points.last(), Some(&(9_999.0, 1.0)));
        assert_eq!(Series::empirical_cdf("empty", &[]).points, Vec::new());
    }

    #[test]
    fn plots_write_svg_with_labels() {
        let weak = Series::empirical_cdf("weak", &[1.0, 2.0, 3.0, 10.0]);
        let strong = Series::empirical_cdf("strong", &[2.0, 3.0, 4.0, 12.0]);
        let cdf_path = temporary_file("cdf.svg");
        write_cdf_svg(&cdf_path, "Latency", "ticks", &[weak, strong], Some(11.0)).expect("CDF drawn");

        let order_path = temporary_file("order.svg");
        let rates = Series::in_order("weak", [(1, 5.0), (3, 6.0)]);
        write_order_svg(&order_path, "Rate by trial", "trial", "rate", &[rates]).expect("order plot drawn");

        let bars_path = temporary_file("bars.svg");
        let bars = [
            BarWithInterval { label: "notify-check".into(), value: 30.0, low: 20.0, high: 40.0 },
            BarWithInterval { label: "used-read".into(), value: -2.0, low: -5.0, high: 1.0 },
        ];
        write_bars_svg(&bars_path, "Site cost", "ticks", &bars).expect("bars drawn");

        for (path, expected) in [
            (&cdf_path, "strong"),
            (&order_path, "Rate by trial"),
            (&bars_path, "notify-check"),
        ] {
            let text = fs::read_to_string(path).expect("SVG readable");
            assert!(text.starts_with("<svg"), "{}", path.display());
            assert!(text.contains("<text"), "{}", path.display());
            assert!(text.contains(expected), "{} lacks {expected}", path.display());
        }
        fs::remove_dir_all(cdf_path.parent().expect("directory")).expect("cleanup");
    }
}
