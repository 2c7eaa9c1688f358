#![doc = include_str!("../README.md")]
//!
//! ## In detail
//!
//! Small PNG charts with no system dependencies: line charts (training
//! curves) and horizontal bar charts with interval whiskers (ablation
//! studies), drawn on an RGB [`Canvas`] with a built-in 5x7 bitmap font and
//! written with the `png` crate. Output is a pure function of the input, so
//! a regenerated plot is byte-identical.
//!
//! ```
//! use cssl_plot::{LineChart, Series};
//! let chart = LineChart {
//!     title: "Loss".into(),
//!     x_label: "step".into(),
//!     series: vec![Series::new("train", vec![(1.0, 4.2), (2.0, 3.9), (3.0, 3.1)])],
//!     ..LineChart::default()
//! };
//! let png = chart.render(640, 400).encode_png();
//! assert_eq!(&png[1..4], b"PNG");
//! ```
#![warn(missing_docs)]

mod font;

use std::path::Path;

/// An RGB colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

const BLACK: Rgb = Rgb(20, 20, 20);
const GRID: Rgb = Rgb(225, 225, 225);
const AXIS: Rgb = Rgb(90, 90, 90);

/// Ten distinguishable colours (matplotlib's "tab10"); series `i` uses
/// `PALETTE[i % 10]`.
pub const PALETTE: [Rgb; 10] = [
    Rgb(31, 119, 180),
    Rgb(255, 127, 14),
    Rgb(44, 160, 44),
    Rgb(214, 39, 40),
    Rgb(148, 103, 189),
    Rgb(140, 86, 75),
    Rgb(227, 119, 194),
    Rgb(127, 127, 127),
    Rgb(188, 189, 34),
    Rgb(23, 190, 207),
];

/// A rectangle of a canvas, in pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

/// An RGB image to draw on.
#[derive(Clone, Debug)]
pub struct Canvas {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl Canvas {
    /// A white `width` x `height` canvas.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![255; width * height * 3],
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The colour at `(x, y)`.
    ///
    /// # Panics
    /// Outside the canvas.
    pub fn pixel(&self, x: usize, y: usize) -> Rgb {
        let i = (y * self.width + x) * 3;
        Rgb(self.data[i], self.data[i + 1], self.data[i + 2])
    }

    fn put(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.data[i..i + 3].copy_from_slice(&[c.0, c.1, c.2]);
        }
    }

    /// Fills the pixels whose centres lie in `[x0, x1) x [y0, y1)`.
    pub fn fill_rect(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: Rgb) {
        let (xa, xb) = (x0.min(x1).round() as i64, x0.max(x1).round() as i64);
        let (ya, yb) = (y0.min(y1).round() as i64, y0.max(y1).round() as i64);
        for y in ya..yb {
            for x in xa..xb {
                self.put(x, y, c);
            }
        }
    }

    /// A line `width` pixels thick from `(x0, y0)` to `(x1, y1)`.
    pub fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: Rgb, width: f64) {
        let len = ((x1 - x0).powi(2) + (y1 - y0).powi(2)).sqrt();
        let n = (len * 2.0).ceil().max(1.0) as usize;
        let r = (width / 2.0).max(0.5);
        for i in 0..=n {
            let t = i as f64 / n as f64;
            let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
            self.fill_rect(x - r, y - r, x + r, y + r, c);
        }
    }

    /// Pixels `s` takes at `scale` (each font pixel is `scale` x `scale`).
    pub fn text_width(s: &str, scale: usize) -> f64 {
        let n = s.chars().count();
        (n * (font::GLYPH.0 + 1) * scale) as f64 - scale as f64
    }

    /// Height of a line of text at `scale`.
    pub fn text_height(scale: usize) -> f64 {
        (font::GLYPH.1 * scale) as f64
    }

    /// Writes `s` with its top-left corner at `(x, y)`.
    pub fn text(&mut self, x: f64, y: f64, s: &str, c: Rgb, scale: usize) {
        let (x, y) = (x.round() as i64, y.round() as i64);
        let step = ((font::GLYPH.0 + 1) * scale) as i64;
        for (k, ch) in s.chars().enumerate() {
            let rows = font::glyph(ch)
                .or_else(|| font::glyph('?'))
                .unwrap_or_default();
            for (r, row) in rows.iter().enumerate() {
                for (col, b) in row.bytes().enumerate() {
                    if b == b'#' {
                        for dy in 0..scale as i64 {
                            for dx in 0..scale as i64 {
                                self.put(
                                    x + k as i64 * step + (col * scale) as i64 + dx,
                                    y + (r * scale) as i64 + dy,
                                    c,
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// `s` centred on `cx`.
    fn text_centered(&mut self, cx: f64, y: f64, s: &str, c: Rgb, scale: usize) {
        self.text(cx - Self::text_width(s, scale) / 2.0, y, s, c, scale);
    }

    /// Copies `other` with its top-left corner at `(x, y)`.
    pub fn blit(&mut self, other: &Canvas, x: usize, y: usize) {
        for row in 0..other.height {
            for col in 0..other.width {
                self.put((x + col) as i64, (y + row) as i64, other.pixel(col, row));
            }
        }
    }

    /// The canvas as a PNG file's bytes.
    pub fn encode_png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            // Writing into a Vec cannot fail for a well-formed header.
            let mut writer = encoder.write_header().expect("PNG header into memory");
            writer
                .write_image_data(&self.data)
                .expect("PNG data into memory");
        }
        out
    }

    /// Writes the canvas as a PNG file.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save_png(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.encode_png())
    }
}

/// "Nice" tick values covering `[lo, hi]`: about `n` multiples of 1, 2 or 5
/// times a power of ten.
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let count = |step: f64| ((hi / step).floor() - (lo / step).ceil() + 1.0).max(0.0);
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .min_by(|a, b| {
            let da = (count(*a) - n as f64).abs();
            let db = (count(*b) - n as f64).abs();
            da.total_cmp(&db)
        })
        .unwrap_or(mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// A tick label with as many decimals as the tick spacing needs.
fn tick_label(v: f64, step: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        return format!("{v:.0e}");
    }
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

/// Vertical grid lines and tick labels under `plot` for the x range
/// `(lo, hi)`, placed by `px`.
fn x_grid(canvas: &mut Canvas, plot: Rect, (lo, hi): (f64, f64), px: impl Fn(f64) -> f64) {
    let t = ticks(lo, hi, 6);
    let step = if t.len() > 1 { t[1] - t[0] } else { 1.0 };
    for &v in &t {
        let x = px(v);
        canvas.line(x, plot.y, x, plot.y + plot.h, GRID, 1.0);
        canvas.text_centered(x, plot.y + plot.h + 8.0, &tick_label(v, step), AXIS, SCALE);
    }
}

/// One line of a [`LineChart`].
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// Legend entry (series with the same name and colour share one entry;
    /// an empty name has none).
    pub name: String,
    /// `(x, y)` points, drawn in order; non-finite points break the line.
    pub points: Vec<(f64, f64)>,
    /// Index into [`PALETTE`] (default: the series' position).
    pub color: Option<usize>,
    /// Draw a dot at each point (for short series).
    pub markers: bool,
}

impl Series {
    /// A named series.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            ..Self::default()
        }
    }
}

/// A line chart with axes, grid, ticks and a legend.
#[derive(Clone, Debug, Default)]
pub struct LineChart {
    /// Title above the plot.
    pub title: String,
    /// Label under the x axis.
    pub x_label: String,
    /// Label above the y axis.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Plot log10(y) (non-positive values are left out).
    pub log_y: bool,
}

const SCALE: usize = 2;

impl LineChart {
    /// The chart on a new `width` x `height` canvas.
    pub fn render(&self, width: usize, height: usize) -> Canvas {
        let mut c = Canvas::new(width, height);
        self.draw(
            &mut c,
            Rect {
                x: 0.0,
                y: 0.0,
                w: width as f64,
                h: height as f64,
            },
        );
        c
    }

    /// Draws the chart into `area` of `canvas`.
    pub fn draw(&self, canvas: &mut Canvas, area: Rect) {
        let th = Canvas::text_height(SCALE);
        canvas.text_centered(
            area.x + area.w / 2.0,
            area.y + 8.0,
            &self.title,
            BLACK,
            SCALE,
        );
        let ty = |y: f64| if self.log_y { y.log10() } else { y };
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.log_y || *y > 0.0))
            .map(|&(x, y)| (x, ty(y)))
            .collect();
        // Legend entries: one per name and colour, for series with points.
        let mut entries: Vec<(String, Rgb)> = Vec::new();
        for (i, s) in self.series.iter().enumerate() {
            let color = PALETTE[s.color.unwrap_or(i) % PALETTE.len()];
            if !s.name.is_empty()
                && !s.points.is_empty()
                && !entries.iter().any(|(n, c)| *n == s.name && *c == color)
            {
                entries.push((s.name.clone(), color));
            }
        }
        // Laid out left to right under the title, wrapping.
        let (left, width) = (area.x + 90.0, (area.w - 110.0).max(10.0));
        let mut placed = Vec::new();
        let (mut lx, mut row) = (0.0, 0usize);
        for (name, color) in &entries {
            let w = Canvas::text_width(name, SCALE) + 40.0;
            if lx > 0.0 && lx + w > width {
                lx = 0.0;
                row += 1;
            }
            placed.push((left + lx, row, name.clone(), *color));
            lx += w;
        }
        let band = if entries.is_empty() {
            0.0
        } else {
            (row + 1) as f64 * (th + 6.0)
        };
        let top = area.y + 16.0 + th * 2.5 + band;
        let plot = Rect {
            x: left,
            y: top,
            w: width,
            h: (area.y + area.h - top - th * 3.5).max(10.0),
        };
        for (x, r, name, color) in &placed {
            let y = area.y + 16.0 + th * 1.5 + *r as f64 * (th + 6.0);
            canvas.fill_rect(x + 0.0, y + 2.0, x + 20.0, y + th - 2.0, *color);
            canvas.text(x + 26.0, y, name, BLACK, SCALE);
        }
        if !self.y_label.is_empty() {
            canvas.text(area.x + 8.0, plot.y - th - 6.0, &self.y_label, AXIS, SCALE);
        }
        canvas.text_centered(
            plot.x + plot.w / 2.0,
            plot.y + plot.h + th * 2.0,
            &self.x_label,
            AXIS,
            SCALE,
        );
        if pts.is_empty() {
            canvas.text_centered(
                plot.x + plot.w / 2.0,
                plot.y + plot.h / 2.0,
                "no data yet",
                AXIS,
                SCALE,
            );
            return;
        }
        let (mut x0, mut x1, mut y0, mut y1) = pts.iter().fold(
            (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
            |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
        );
        if x1 <= x0 {
            x0 -= 0.5;
            x1 += 0.5;
        } else {
            // Room for the markers at both ends.
            let pad = (x1 - x0) * 0.02;
            x0 -= pad;
            x1 += pad;
        }
        let pad = if y1 > y0 {
            (y1 - y0) * 0.05
        } else {
            y0.abs().max(1.0) * 0.05
        };
        y0 -= pad;
        y1 += pad;
        let px = |x: f64| plot.x + (x - x0) / (x1 - x0) * plot.w;
        let py = |y: f64| plot.y + plot.h - (y - y0) / (y1 - y0) * plot.h;
        // Grid and ticks.
        let yt = ticks(y0, y1, 5);
        let ystep = if yt.len() > 1 { yt[1] - yt[0] } else { 1.0 };
        for &v in &yt {
            let y = py(v);
            canvas.line(plot.x, y, plot.x + plot.w, y, GRID, 1.0);
            let label = if self.log_y {
                tick_label(10f64.powf(v), 10f64.powf(v) * ystep.min(1.0))
            } else {
                tick_label(v, ystep)
            };
            let w = Canvas::text_width(&label, SCALE);
            canvas.text(plot.x - w - 8.0, y - th / 2.0, &label, AXIS, SCALE);
        }
        x_grid(canvas, plot, (x0, x1), px);
        canvas.line(
            plot.x,
            plot.y + plot.h,
            plot.x + plot.w,
            plot.y + plot.h,
            AXIS,
            1.5,
        );
        canvas.line(plot.x, plot.y, plot.x, plot.y + plot.h, AXIS, 1.5);
        // Lines.
        for (i, s) in self.series.iter().enumerate() {
            let color = PALETTE[s.color.unwrap_or(i) % PALETTE.len()];
            let mut prev: Option<(f64, f64)> = None;
            for &(x, y) in &s.points {
                if !(x.is_finite() && y.is_finite()) || (self.log_y && y <= 0.0) {
                    prev = None;
                    continue;
                }
                let p = (px(x), py(ty(y)));
                if let Some(q) = prev {
                    canvas.line(q.0, q.1, p.0, p.1, color, 2.0);
                }
                if s.markers || s.points.len() == 1 {
                    canvas.fill_rect(p.0 - 3.0, p.1 - 3.0, p.0 + 3.0, p.1 + 3.0, color);
                }
                prev = Some(p);
            }
        }
    }
}

/// One bar of a [`BarChart`].
#[derive(Clone, Debug, Default)]
pub struct Bar {
    /// Label left of the bar.
    pub label: String,
    /// The bar's length (e.g. a mean).
    pub value: f64,
    /// A whisker from `.0` to `.1` (e.g. a 95% confidence interval).
    pub interval: Option<(f64, f64)>,
    /// Index into [`PALETTE`] (bars of one group share a colour).
    pub color: usize,
    /// Text right of the bar (default: the value).
    pub note: Option<String>,
}

/// A horizontal bar chart with whiskers and an optional reference line.
#[derive(Clone, Debug, Default)]
pub struct BarChart {
    /// Title above the chart.
    pub title: String,
    /// Label under the value axis.
    pub x_label: String,
    /// The bars, top to bottom.
    pub bars: Vec<Bar>,
    /// A dashed vertical line at this value, with its name.
    pub reference: Option<(String, f64)>,
    /// The axis range (default: fitted to the bars and whiskers).
    pub range: Option<(f64, f64)>,
}

impl BarChart {
    /// The chart on a new canvas `width` wide, tall enough for every bar.
    pub fn render(&self, width: usize) -> Canvas {
        let th = Canvas::text_height(SCALE);
        let height = (16.0 + th * 4.5 + self.bars.len().max(1) as f64 * (th + 18.0) + th * 4.0)
            .ceil() as usize;
        let mut c = Canvas::new(width, height);
        let label_w = self
            .bars
            .iter()
            .map(|b| Canvas::text_width(&b.label, SCALE))
            .fold(0.0, f64::max)
            + 24.0;
        c.text_centered(width as f64 / 2.0, 8.0, &self.title, BLACK, SCALE);
        let plot = Rect {
            x: label_w.min(width as f64 * 0.45),
            y: 16.0 + th * 3.5,
            w: (width as f64 - label_w.min(width as f64 * 0.45) - 160.0).max(10.0),
            h: self.bars.len().max(1) as f64 * (th + 18.0),
        };
        let (lo, hi) = self.range.unwrap_or_else(|| {
            let vals = self.bars.iter().flat_map(|b| {
                let (a, z) = b.interval.unwrap_or((b.value, b.value));
                [b.value, a, z]
            });
            let vals = vals.chain(self.reference.iter().map(|r| r.1));
            let (a, z) = vals
                .filter(|v| v.is_finite())
                .fold((f64::MAX, f64::MIN), |(a, z), v| (a.min(v), z.max(v)));
            if a > z {
                (0.0, 1.0)
            } else {
                let pad = ((z - a) * 0.15).max(z.abs() * 0.01).max(1e-9);
                (a - pad, z + pad)
            }
        });
        let px = |v: f64| plot.x + ((v - lo) / (hi - lo)).clamp(0.0, 1.0) * plot.w;
        x_grid(&mut c, plot, (lo, hi), px);
        c.text_centered(
            plot.x + plot.w / 2.0,
            plot.y + plot.h + 16.0 + th,
            &self.x_label,
            AXIS,
            SCALE,
        );
        for (i, b) in self.bars.iter().enumerate() {
            let y = plot.y + i as f64 * (th + 18.0) + 6.0;
            let color = PALETTE[b.color % PALETTE.len()];
            c.text(
                plot.x - Canvas::text_width(&b.label, SCALE) - 10.0,
                y + 4.0,
                &b.label,
                BLACK,
                SCALE,
            );
            if b.value.is_finite() {
                c.fill_rect(px(lo), y, px(b.value), y + th + 8.0, color);
            }
            let mut right = px(b.value);
            if let Some((a, z)) = b.interval.filter(|(a, z)| a.is_finite() && z.is_finite()) {
                let mid = y + (th + 8.0) / 2.0;
                c.line(px(a), mid, px(z), mid, BLACK, 2.0);
                c.line(px(a), y + 2.0, px(a), y + th + 6.0, BLACK, 2.0);
                c.line(px(z), y + 2.0, px(z), y + th + 6.0, BLACK, 2.0);
                right = right.max(px(z));
            }
            let note = b.note.clone().unwrap_or_else(|| format!("{:.2}", b.value));
            c.text(right + 8.0, y + 4.0, &note, BLACK, SCALE);
        }
        c.line(plot.x, plot.y, plot.x, plot.y + plot.h, AXIS, 1.5);
        if let Some((name, v)) = &self.reference {
            let x = px(*v);
            let mut yy = plot.y;
            while yy < plot.y + plot.h {
                c.line(x, yy, x, (yy + 6.0).min(plot.y + plot.h), AXIS, 2.0);
                yy += 12.0;
            }
            // Right of the line, or left of it when it would not fit.
            let w = Canvas::text_width(name, SCALE);
            let tx = if x + 4.0 + w > width as f64 {
                x - 4.0 - w
            } else {
                x + 4.0
            };
            c.text(tx, plot.y - th - 2.0, name, AXIS, SCALE);
        }
        c
    }
}

/// Panels laid out `cols` to a row, each `panel` = (width, height).
pub fn grid(charts: &[LineChart], cols: usize, panel: (usize, usize)) -> Canvas {
    let cols = cols.max(1).min(charts.len().max(1));
    let rows = charts.len().div_ceil(cols).max(1);
    let mut c = Canvas::new(cols * panel.0, rows * panel.1);
    for (i, chart) in charts.iter().enumerate() {
        chart.draw(
            &mut c,
            Rect {
                x: ((i % cols) * panel.0) as f64,
                y: ((i / cols) * panel.1) as f64,
                w: panel.0 as f64,
                h: panel.1 as f64,
            },
        );
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 1.0, 5),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(ticks(3.0, 97.0, 4), vec![20.0, 40.0, 60.0, 80.0]);
        assert_eq!(tick_label(0.25, 0.05), "0.25");
        assert_eq!(tick_label(1500.0, 500.0), "1500");
    }

    #[test]
    fn a_line_chart_draws_its_series_in_their_colour() {
        let chart = LineChart {
            title: "t".into(),
            series: vec![Series::new("a", vec![(0.0, 0.0), (1.0, 1.0)])],
            ..LineChart::default()
        };
        let c = chart.render(400, 300);
        let blue = (0..c.width())
            .flat_map(|x| (0..c.height()).map(move |y| (x, y)))
            .filter(|&(x, y)| c.pixel(x, y) == PALETTE[0])
            .count();
        assert!(blue > 300, "{blue} pixels of the series' colour");
        // Deterministic bytes.
        assert_eq!(c.encode_png(), chart.render(400, 300).encode_png());
    }

    #[test]
    fn bars_are_as_long_as_their_values() {
        let chart = BarChart {
            bars: vec![
                Bar {
                    label: "a".into(),
                    value: 1.0,
                    color: 0,
                    ..Bar::default()
                },
                Bar {
                    label: "b".into(),
                    value: 2.0,
                    color: 1,
                    ..Bar::default()
                },
            ],
            range: Some((0.0, 2.0)),
            ..BarChart::default()
        };
        let c = chart.render(600);
        let count = |color| {
            (0..c.width())
                .flat_map(|x| (0..c.height()).map(move |y| (x, y)))
                .filter(|&(x, y)| c.pixel(x, y) == color)
                .count() as f64
        };
        let ratio = count(PALETTE[1]) / count(PALETTE[0]);
        assert!((ratio - 2.0).abs() < 0.1, "bar areas {ratio}");
    }
}
