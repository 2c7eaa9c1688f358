//! The run's curves: `steps.csv` (the training curve, one row per window of
//! steps) and `training.png` (one panel per metric: the training curve over
//! epochs, each epoch's validation mean as dots).

use crate::checkpoint::{CurvePoint, MetricsRow};
use crate::fit::{EMBEDDING_STD, LEARNING_RATE, LOSS};
use crate::run::{write_atomic, RunDir};
use cssl_core::{CsslError, Result};
use cssl_plot::{grid, Canvas, LineChart, Series};
use std::path::Path;

/// About how many points the training curve keeps (a point is the mean of
/// `total_steps / CURVE_POINTS` steps, at least one).
pub const CURVE_POINTS: usize = 200;

/// The metric names of `curve` and `rows`, loss, learning rate and embedding
/// spread first.
fn metric_names(curve: &[CurvePoint], rows: &[MetricsRow]) -> Vec<String> {
    let mut names: Vec<String> = curve
        .iter()
        .flat_map(|p| p.values.keys())
        .chain(rows.iter().flat_map(|r| r.values.keys()))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    let rank = |n: &str| match n {
        LOSS => 0,
        LEARNING_RATE => 1,
        EMBEDDING_STD => 2,
        _ => 3,
    };
    names.sort_by_key(|n| rank(n));
    names
}

/// Rewrites `steps.csv`: `step,epoch,<metric>...` (epoch as a fraction).
pub(crate) fn write_steps_csv(
    run: &RunDir,
    curve: &[CurvePoint],
    steps_per_epoch: usize,
) -> Result<()> {
    let names = metric_names(curve, &[]);
    let mut text = format!(
        "step,epoch{}\n",
        names.iter().map(|n| format!(",{n}")).collect::<String>()
    );
    for p in curve {
        text += &format!(
            "{},{}",
            p.step,
            p.step as f64 / steps_per_epoch.max(1) as f64
        );
        for n in &names {
            match p.values.get(n) {
                Some(v) => text += &format!(",{v}"),
                None => text += ",",
            }
        }
        text += "\n";
    }
    write_atomic(&run.file("steps.csv"), text.as_bytes())
}

/// Reads a `steps.csv` (or `metrics.csv`-like) file: its header and its
/// rows as numbers (an empty or non-numeric cell is NaN).
///
/// # Errors
/// The file cannot be read, or has no header.
pub fn read_steps_csv(path: &Path) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
    let text = std::fs::read_to_string(path).map_err(|e| CsslError::io(path, e))?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| CsslError::invalid(path, "empty file: no header"))?
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .map(|l| {
            l.split(',')
                .map(|v| v.parse().unwrap_or(f64::NAN))
                .collect()
        })
        .collect();
    Ok((header, rows))
}

/// One panel per metric: the training curve against epochs and each
/// epoch's validation mean (dots); `title` heads the figure.
pub fn training_plot(
    title: &str,
    curve: &[CurvePoint],
    rows: &[MetricsRow],
    steps_per_epoch: usize,
) -> Canvas {
    let per_epoch = steps_per_epoch.max(1) as f64;
    let charts: Vec<LineChart> = metric_names(curve, rows)
        .into_iter()
        .map(|name| {
            let train: Vec<(f64, f64)> = curve
                .iter()
                .filter_map(|p| p.values.get(&name).map(|v| (p.step as f64 / per_epoch, *v)))
                .collect();
            let split = |s: &str| -> Vec<(f64, f64)> {
                rows.iter()
                    .filter(|r| r.split == s)
                    .filter_map(|r| r.values.get(&name).map(|v| (r.epoch as f64, *v)))
                    .collect()
            };
            let mut series = Vec::new();
            if !train.is_empty() {
                series.push(Series {
                    color: Some(0),
                    ..Series::new("train", train)
                });
            } else {
                series.push(Series {
                    color: Some(0),
                    markers: true,
                    ..Series::new("train", split("train"))
                });
            }
            let valid = split("valid");
            if !valid.is_empty() {
                series.push(Series {
                    color: Some(1),
                    markers: true,
                    ..Series::new("valid", valid)
                });
            }
            LineChart {
                title: name.clone(),
                x_label: "epoch".into(),
                y_label: String::new(),
                log_y: name == LEARNING_RATE,
                series,
            }
        })
        .collect();
    let body = grid(&charts, 3, (600, 380));
    let top = 44;
    let mut canvas = Canvas::new(body.width().max(600), body.height() + top);
    canvas.text(16.0, 14.0, title, cssl_plot::Rgb(20, 20, 20), 2);
    canvas.blit(&body, 0, top);
    canvas
}

/// Redraws `training.png` of `run`.
pub(crate) fn write_training_plot(
    run: &RunDir,
    title: &str,
    curve: &[CurvePoint],
    rows: &[MetricsRow],
    steps_per_epoch: usize,
) -> Result<()> {
    let png = training_plot(title, curve, rows, steps_per_epoch).encode_png();
    write_atomic(&run.file("training.png"), &png)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn point(step: usize, loss: f64) -> CurvePoint {
        CurvePoint {
            step,
            values: BTreeMap::from([(LOSS.to_string(), loss), ("Zeta".to_string(), 1.0)]),
        }
    }

    #[test]
    fn steps_csv_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("r"), false).unwrap();
        write_steps_csv(&run, &[point(2, 4.5), point(4, 4.25)], 4).unwrap();
        let (header, rows) = read_steps_csv(&run.file("steps.csv")).unwrap();
        assert_eq!(header, ["step", "epoch", LOSS, "Zeta"]);
        assert_eq!(
            rows,
            vec![vec![2.0, 0.5, 4.5, 1.0], vec![4.0, 1.0, 4.25, 1.0]]
        );
    }

    #[test]
    fn one_panel_per_metric() {
        let rows = vec![MetricsRow {
            epoch: 1,
            split: "valid".into(),
            values: BTreeMap::from([(LOSS.to_string(), 4.0), ("kNN".to_string(), 0.5)]),
        }];
        let c = training_plot("t", &[point(1, 5.0), point(2, 4.0)], &rows, 2);
        // Loss, kNN, Zeta: three panels of one row.
        assert_eq!((c.width(), c.height()), (1800, 380 + 44));
    }
}
