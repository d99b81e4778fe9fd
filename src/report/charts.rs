//! The page's three charts as inline SVG, drawn with plotters: chunk arrivals per peer (a
//! heatmap), completion and chunks held over time, and throughput per link. Every chart is a
//! [`CHART_WIDTH`]-wide SVG with seconds since the start along x; [`draw_svg`],
//! [`time_chart`], [`time_mesh`] and [`draw_legend`] hold what they share.

use std::ops::Range;

use plotters::chart::MeshStyle;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, SegmentValue, ValueFormatter};
use plotters::coord::types::{RangedCoordf64, RangedCoordu32};
use plotters::prelude::*;

use super::error::ReportError;
use super::scan::{ARRIVAL_BINS, Bins, LINK_BINS, Scan, bin_start};
use super::summary::{Bound, Summary};
use crate::units::human_secs;

/// Past this many series a chart colours lines by kind and names none of them.
const LEGEND_MAX: usize = 12;
/// Width of every chart, in pixels (the page scales it down on narrow screens).
const CHART_WIDTH: u32 = 1100;

/// Chunks from the owner.
pub(super) const OWNER_RGB: RGBColor = RGBColor(31, 119, 180);
/// Chunks from a ring neighbour.
pub(super) const NEIGHBOUR_RGB: RGBColor = RGBColor(255, 127, 14);
/// Line colours when each series is named (matplotlib's tab10).
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
const FONT: &str = "sans-serif";

type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;
/// What a chart is drawn on.
type Area<'s> = DrawingArea<SVGBackend<'s>, Shift>;
/// A chart with seconds since the start along x.
type TimeChart<'a, 's, Y> = ChartContext<'a, SVGBackend<'s>, Cartesian2d<RangedCoordf64, Y>>;

/// The page's charts, each an SVG document.
pub(super) struct Charts {
    pub(super) arrivals: String,
    pub(super) completion: String,
    pub(super) links: String,
}

impl Charts {
    /// Draws the three charts, in page order.
    ///
    /// # Errors
    ///
    /// [`ReportError::Chart`] naming the first chart that cannot be drawn.
    pub(super) fn draw(summary: &Summary, scan: &Scan, bins: &Bins) -> Result<Self, ReportError> {
        let chart = |chart: &'static str| {
            move |e: Box<dyn std::error::Error>| ReportError::Chart {
                chart,
                message: e.to_string(),
            }
        };
        Ok(Charts {
            arrivals: draw_arrivals(summary, scan, bins).map_err(chart("arrivals"))?,
            completion: draw_completion(summary, scan, bins).map_err(chart("completion"))?,
            links: draw_links(summary, scan, bins).map_err(chart("links"))?,
        })
    }
}

/// Draws a [`CHART_WIDTH`] × `height` SVG on white with `draw` and returns it.
fn draw_svg(height: u32, draw: impl FnOnce(&Area<'_>) -> DrawResult<()>) -> DrawResult<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (CHART_WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(svg)
}

/// A chart captioned `title` on `area`: seconds since the start across `x`, `y` upwards, a
/// y-label area `y_label_px` wide.
fn time_chart<'a, 's, Y: AsRangedCoord>(
    area: &Area<'s>,
    title: &str,
    y_label_px: u32,
    x: Range<f64>,
    y: Y,
) -> DrawResult<TimeChart<'a, 's, Y::CoordDescType>> {
    Ok(ChartBuilder::on(area)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(y_label_px)
        .build_cartesian_2d(x, y)?)
}

/// The mesh settings every chart shares: 12 time labels formatted by `fmt_x`, the axis names
/// and fonts. The caller adds its y labels and draws it.
fn time_mesh<'a, 'b, 's, Y>(
    chart: &'b mut TimeChart<'a, 's, Y>,
    fmt_x: &'b dyn Fn(&f64) -> String,
    y_desc: &str,
) -> MeshStyle<'a, 'b, RangedCoordf64, Y, SVGBackend<'s>>
where
    Y: Ranged + ValueFormatter<<Y as Ranged>::ValueType>,
{
    let mut mesh = chart.configure_mesh();
    mesh.x_labels(12)
        .x_label_formatter(fmt_x)
        .x_desc("seconds since start")
        .y_desc(y_desc)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16));
    mesh
}

/// The legend box every chart shares, at `position`.
fn draw_legend<'a, 's: 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'s>, CT>,
    position: SeriesLabelPosition,
) -> DrawResult<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 15))
        .draw()?;
    Ok(())
}

/// A series' mark in the legend: a short line in its `style`.
fn legend_line(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style)
}

/// The line style of series `i`: its own colour when series are `named`, else `unnamed`
/// (a colour for its kind), thinner.
fn series_style(i: usize, named: bool, unnamed: RGBAColor) -> ShapeStyle {
    if named {
        PALETTE[i % PALETTE.len()].stroke_width(2)
    } else {
        unnamed.stroke_width(1)
    }
}

/// Tick labels for seconds with as many decimals as the axis span needs.
fn secs_formatter(span: f64) -> impl Fn(&f64) -> String {
    let step = span / 10.0;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let decimals = if step > 0.0 && step.is_finite() {
        (-step.log10()).ceil().clamp(0.0, 6.0) as usize
    } else {
        0
    };
    move |x| format!("{x:.decimals$}")
}

/// Mixes the owner and neighbour colours by the share of owner chunks.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn source_colour(owner_share: f64) -> RGBColor {
    let mix = |a: u8, b: u8| {
        (f64::from(a) * owner_share + f64::from(b) * (1.0 - owner_share)).round() as u8
    };
    RGBColor(
        mix(OWNER_RGB.0, NEIGHBOUR_RGB.0),
        mix(OWNER_RGB.1, NEIGHBOUR_RGB.1),
        mix(OWNER_RGB.2, NEIGHBOUR_RGB.2),
    )
}

/// Pixels for a y-axis label area that fits labels of these lengths in chars at `font_px`.
#[allow(clippy::cast_possible_truncation)]
fn label_area(labels: impl Iterator<Item = usize>, font_px: f64) -> u32 {
    let longest = labels.max().unwrap_or(4) as f64;
    (longest * font_px * 0.5 + 20.0).clamp(50.0, 400.0) as u32
}

/// The heatmap: a row per peer, a cell per time slice with arrivals, and a black mark where
/// the peer completed.
fn draw_arrivals(summary: &Summary, scan: &Scan, bins: &Bins) -> DrawResult<String> {
    let rows = scan.rows.len().max(1);
    let row_px = match rows {
        0..=20 => 26,
        21..=50 => 12,
        _ => 7,
    };
    let height = u32::try_from(120 + rows * row_px)?;
    let rows_u32 = u32::try_from(rows)?;
    // Row r is drawn at y = rows - 1 - r, so the first peer is at the top.
    let y_of = |r: usize| rows_u32 - 1 - u32::try_from(r).unwrap_or(0);
    draw_svg(height, |root| {
        let label_px = label_area(scan.rows.iter().map(|r| r.chars().count()), 15.0);
        let y = (0..rows_u32).into_segmented();
        let x = scan.t0..scan.t1;
        let mut chart = time_chart(root, "Chunk arrivals per peer", label_px, x, y)?;
        let fmt_x = secs_formatter(scan.t1 - scan.t0);
        let fmt_y = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(y) if *y < rows_u32 => {
                let r = (rows_u32 - 1 - y) as usize;
                scan.rows.get(r).cloned().unwrap_or_default()
            }
            _ => String::new(),
        };
        time_mesh(&mut chart, &fmt_x, "peer")
            .disable_y_mesh()
            .y_labels(rows.min(40))
            .y_label_formatter(&fmt_y)
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let max = bins
            .arrivals
            .iter()
            .map(|c| c[0] + c[1])
            .max()
            .unwrap_or(0)
            .max(1);
        for r in 0..scan.rows.len() {
            chart.draw_series(arrival_cells(scan, bins.row(r), y_of(r), max))?;
        }
        let marks = summary.peers.iter().filter_map(|p| {
            let t = p.complete_s?;
            let y = y_of(*scan.row_of.get(&p.peer)?);
            Some(PathElement::new(
                vec![(t, SegmentValue::Exact(y)), (t, SegmentValue::Exact(y + 1))],
                BLACK.stroke_width(2),
            ))
        });
        chart.draw_series(marks)?;
        Ok(())
    })
}

/// One heatmap row at `y`: a cell per time slice of `row` with arrivals, coloured by their
/// sources and darker for more (`max` is the most any cell holds).
fn arrival_cells<'r>(
    scan: &'r Scan,
    row: &'r [[u32; 2]],
    y: u32,
    max: u32,
) -> impl Iterator<Item = Rectangle<(f64, SegmentValue<u32>)>> + 'r {
    row.iter().enumerate().filter_map(move |(b, c)| {
        let n = c[0] + c[1];
        if n == 0 {
            return None;
        }
        let colour = source_colour(f64::from(c[0]) / f64::from(n))
            .mix(0.35 + 0.65 * f64::from(n) / f64::from(max));
        let x0 = bin_start(b, scan.t0, scan.t1, ARRIVAL_BINS);
        let x1 = bin_start(b + 1, scan.t0, scan.t1, ARRIVAL_BINS);
        let mut rect = Rectangle::new(
            [
                (x0, SegmentValue::Exact(y)),
                (x1, SegmentValue::Exact(y + 1)),
            ],
            colour.filled(),
        );
        rect.set_margin(1, 1, 0, 0);
        Some(rect)
    })
}

/// Two charts in one SVG: peers complete over time (with the bounds, if any) above chunks
/// held per peer.
fn draw_completion(summary: &Summary, scan: &Scan, bins: &Bins) -> DrawResult<String> {
    let mut t1 = scan.t1;
    if let Some(b) = &summary.bound {
        for t in [b.fluid_s, b.chunked_ring_s] {
            if t.is_finite() {
                t1 = t1.max(t * 1.02);
            }
        }
    }
    let x = scan.t0..t1;
    draw_svg(760, |root| {
        let (top, bottom) = root.split_vertically(320);
        draw_peers_complete(&top, summary, x.clone())?;
        draw_chunks_held(&bottom, summary, scan, bins, x)
    })
}

/// Peers complete over time: a step up at each completion.
fn draw_peers_complete(area: &Area<'_>, summary: &Summary, x: Range<f64>) -> DrawResult<()> {
    let fmt_x = secs_formatter(x.end - x.start);
    let peers = u32::try_from(summary.peers.len())?;
    let mut done: Vec<f64> = summary.peers.iter().filter_map(|p| p.complete_s).collect();
    done.sort_by(f64::total_cmp);
    let mut steps = vec![(x.start, 0u32)];
    for (k, &t) in (0u32..).zip(&done) {
        steps.push((t, k));
        steps.push((t, k + 1));
    }
    steps.push((x.end, u32::try_from(done.len())?));
    let top_y = peers.max(1) + 1;
    let mut chart = time_chart(area, "Completion", 70, x, 0..top_y)?;
    time_mesh(&mut chart, &fmt_x, "peers complete")
        .y_labels(10)
        .draw()?;
    let style = BLACK.stroke_width(2);
    chart
        .draw_series(LineSeries::new(steps, style))?
        .label("peers complete")
        .legend(legend_line(style));
    if let Some(b) = &summary.bound {
        draw_bounds(&mut chart, b, top_y)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// The fluid lower bound and the chunked-ring time as dashed lines up to `top_y`.
fn draw_bounds(
    chart: &mut TimeChart<'_, '_, RangedCoordu32>,
    bound: &Bound,
    top_y: u32,
) -> DrawResult<()> {
    for (t, name, colour) in [
        (bound.fluid_s, "fluid lower bound", RGBColor(214, 39, 40)),
        (
            bound.chunked_ring_s,
            "chunked-ring time",
            RGBColor(127, 127, 127),
        ),
    ] {
        if !t.is_finite() {
            continue;
        }
        let style = colour.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new([(t, 0), (t, top_y)], 6, 4, style))?
            .label(format!("{name} {}", human_secs(t)))
            .legend(legend_line(style));
    }
    Ok(())
}

/// Chunks held per peer: cumulative arrivals at the end of each time slice.
fn draw_chunks_held(
    area: &Area<'_>,
    summary: &Summary,
    scan: &Scan,
    bins: &Bins,
    x: Range<f64>,
) -> DrawResult<()> {
    let fmt_x = secs_formatter(x.end - x.start);
    let held_max = (0..scan.rows.len())
        .map(|r| bins.row(r).iter().map(|c| c[0] + c[1]).sum::<u32>())
        .max()
        .unwrap_or(0)
        .max(summary.file.chunks)
        .max(1);
    let y = 0..held_max + held_max / 20 + 1;
    let mut chart = time_chart(area, "Chunks held per peer", 70, x, y)?;
    time_mesh(&mut chart, &fmt_x, "chunks held")
        .y_labels(10)
        .draw()?;
    let named = scan.rows.len() <= LEGEND_MAX;
    for r in 0..scan.rows.len() {
        let mut held = 0u32;
        let points =
            std::iter::once((scan.t0, 0)).chain(bins.row(r).iter().enumerate().map(|(b, c)| {
                held += c[0] + c[1];
                (bin_start(b + 1, scan.t0, scan.t1, ARRIVAL_BINS), held)
            }));
        let style = series_style(r, named, OWNER_RGB.mix(0.45));
        let series = chart.draw_series(LineSeries::new(points, style))?;
        if named {
            series
                .label(scan.rows[r].as_str())
                .legend(legend_line(style));
        } else if r == 0 {
            series
                .label(format!("one line per peer ({} peers)", scan.rows.len()))
                .legend(legend_line(style));
        }
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// Throughput per link: MiB/s received in each time slice, one line per link.
fn draw_links(summary: &Summary, scan: &Scan, bins: &Bins) -> DrawResult<String> {
    const MIB: f64 = 1024.0 * 1024.0;
    let width = (scan.t1 - scan.t0) / LINK_BINS as f64;
    let rate = |bytes: u64| bytes as f64 / width / MIB;
    let y_max = bins
        .link_bytes
        .iter()
        .map(|&b| rate(b))
        .fold(0.0, f64::max)
        .max(f64::EPSILON);
    draw_svg(460, |root| {
        let (x, y) = (scan.t0..scan.t1, 0.0..y_max * 1.1);
        let mut chart = time_chart(root, "Throughput per link", 70, x, y)?;
        let fmt_x = secs_formatter(scan.t1 - scan.t0);
        let fmt_y = secs_formatter(y_max);
        time_mesh(&mut chart, &fmt_x, "MiB/s")
            .y_labels(8)
            .y_label_formatter(&fmt_y)
            .draw()?;
        let named = scan.links.len() <= LEGEND_MAX;
        let mut kinds_named = [false; 2];
        for (l, (r, from)) in scan.links.iter().enumerate() {
            let from_owner = *from == summary.owner;
            let points = bins.link(l).iter().enumerate().map(|(b, &bytes)| {
                let mid = scan.t0 + width * (b as f64 + 0.5);
                (mid, rate(bytes))
            });
            let kind_rgb = if from_owner { OWNER_RGB } else { NEIGHBOUR_RGB };
            let style = series_style(l, named, kind_rgb.mix(0.5));
            let series = chart.draw_series(LineSeries::new(points, style))?;
            let sender = if from_owner { "owner" } else { from.as_str() };
            let kind = usize::from(!from_owner);
            if named {
                series.label(format!("{sender} → {}", scan.rows[*r]));
            } else if !kinds_named[kind] {
                kinds_named[kind] = true;
                series.label(if from_owner {
                    "owner → peer (one line per link)"
                } else {
                    "neighbour → peer (one line per link)"
                });
            } else {
                continue;
            }
            series.legend(legend_line(style));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}
