//! A study's outputs: `table.md` (paste-ready), `table.csv` (every cell's
//! figures), `cost.csv`, `bars.png` (accuracy per cell with 95% intervals)
//! and `curves.png` (every run's training loss).

use super::runner::{CellResult, Status};
use super::stats::{paired, Summary};
use super::study::Study;
use cssl_core::Result;
use cssl_plot::{grid, Bar, BarChart, Canvas, LineChart, Series};
use std::fmt::Write as _;
use std::path::Path;

/// One cell's row.
#[derive(Clone, Debug)]
pub struct Row {
    /// The cell's label.
    pub cell: String,
    /// Its group.
    pub group: String,
    /// Its group's base cell.
    pub base: String,
    /// Linear probe over seeds (fractions).
    pub probe: Summary,
    /// kNN over seeds.
    pub knn: Summary,
    /// Linear probe of the same encoders at their random init.
    pub random_probe: Summary,
    /// Paired difference of the linear probe to the base (None for the base).
    pub probe_diff: Option<Summary>,
    /// Paired difference of kNN to the base.
    pub knn_diff: Option<Summary>,
    /// Errors of failed seeds.
    pub errors: Vec<String>,
    /// Mean train seconds, eval seconds, views/s, peak MiB.
    pub cost: [f64; 4],
    /// Runs behind the cost.
    pub runs: usize,
}

/// A study's tables.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// One row per cell with results.
    pub rows: Vec<Row>,
    /// `table.md`.
    pub markdown: String,
    /// `table.csv`.
    pub csv: String,
    /// `cost.csv`.
    pub cost_csv: String,
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.2}", v * 100.0)
    } else {
        "-".into()
    }
}

fn diff(d: &Option<Summary>) -> String {
    match d {
        None => "(base)".into(),
        Some(s) if s.n == 0 => "-".into(),
        Some(s) => {
            let (lo, hi) = s.interval();
            let verdict = match s.holds_zero() {
                None => "fewer than 3 seeds: no interval",
                Some(true) => "within noise",
                Some(false) if s.mean > 0.0 => "better",
                Some(false) => "worse",
            };
            if s.half_width.is_finite() {
                format!(
                    "{:+.2} [{:+.2}, {:+.2}] {verdict}",
                    s.mean * 100.0,
                    lo * 100.0,
                    hi * 100.0
                )
            } else {
                format!("{:+.2} ({verdict})", s.mean * 100.0)
            }
        }
    }
}

impl Report {
    /// The tables of `results` (the latest result of each cell and seed).
    pub fn build(study: &Study, results: &[CellResult], price_per_hour: Option<f64>) -> Self {
        let of_cell = |label: &str| -> Vec<&CellResult> {
            results.iter().filter(|r| r.cell == label).collect()
        };
        let metric = |label: &str, f: fn(&CellResult) -> Option<f64>| -> Vec<(u64, f64)> {
            of_cell(label)
                .into_iter()
                .filter(|r| r.status == Status::Ok)
                .filter_map(|r| f(r).map(|v| (r.seed, v)))
                .collect()
        };
        let values = |v: &[(u64, f64)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
        let mut rows = Vec::new();
        for (i, cell) in study.cells.iter().enumerate() {
            let runs = of_cell(&cell.label);
            if runs.is_empty() {
                continue;
            }
            let base = &study.cells[study.base_of(i)].label;
            let probe = metric(&cell.label, |r| r.linear_probe);
            let knn = metric(&cell.label, |r| r.knn);
            let is_base = base == &cell.label;
            let ok: Vec<&&CellResult> = runs.iter().filter(|r| r.status == Status::Ok).collect();
            let mean = |f: fn(&CellResult) -> Option<f64>| {
                let v: Vec<f64> = ok.iter().filter_map(|r| f(r)).collect();
                v.iter().sum::<f64>() / v.len() as f64
            };
            rows.push(Row {
                cell: cell.label.clone(),
                group: study.group(i),
                base: base.clone(),
                probe: Summary::of(&values(&probe)),
                knn: Summary::of(&values(&knn)),
                random_probe: Summary::of(&values(&metric(&cell.label, |r| r.random_linear_probe))),
                probe_diff: (!is_base)
                    .then(|| Summary::of(&paired(&probe, &metric(base, |r| r.linear_probe)))),
                knn_diff: (!is_base).then(|| Summary::of(&paired(&knn, &metric(base, |r| r.knn)))),
                errors: runs
                    .iter()
                    .filter_map(|r| r.error.as_ref().map(|e| format!("seed {}: {e}", r.seed)))
                    .collect(),
                cost: [
                    mean(|r| r.train_seconds),
                    mean(|r| r.eval_seconds),
                    mean(|r| r.views_per_second),
                    mean(|r| r.peak_rss_mib),
                ],
                runs: ok.len(),
            });
        }
        let mut md = String::new();
        let _ = writeln!(md, "### Study `{}`: {}\n", study.name, study.title);
        let _ = writeln!(md, "Finding tested: {}\n", study.finding);
        let _ = writeln!(
            md,
            "{} on {}, {} epoch(s) over {} images (batch {}), seeds {}; linear probe and kNN \
             (k = 200) on {} probe / {} test images. Accuracies in %, mean ± std over seeds, \
             95% t-interval; Δ = paired difference to the group's base cell, by seed, with its \
             95% interval (\"within noise\" when it holds 0); the last column is the same encoders \
             at their random init.\n",
            study.method,
            study.dataset.name(),
            study.budget.epochs,
            study.budget.train_subset,
            study.budget.batch_size,
            study
                .seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            study.eval.probe_subset,
            study.eval.test_subset,
        );
        md += "| cell | seeds | linear probe | 95% CI | Δ probe vs base | kNN | Δ kNN vs base | random-init probe |\n";
        md += "|---|---|---|---|---|---|---|---|\n";
        for r in &rows {
            if r.probe.n == 0 {
                let _ = writeln!(
                    md,
                    "| {} | 0 | failed: {} | | | | | |",
                    r.cell,
                    r.errors
                        .first()
                        .cloned()
                        .unwrap_or_default()
                        .replace('|', "/")
                );
                continue;
            }
            let (lo, hi) = r.probe.interval();
            let _ = writeln!(
                md,
                "| {} | {} | {} ± {} | [{}, {}] | {} | {} ± {} | {} | {} |",
                r.cell,
                r.probe.n,
                pct(r.probe.mean),
                pct(r.probe.std),
                pct(lo),
                pct(hi),
                diff(&r.probe_diff),
                pct(r.knn.mean),
                pct(r.knn.std),
                diff(&r.knn_diff),
                pct(r.random_probe.mean),
            );
        }
        let failed: Vec<String> = rows
            .iter()
            .flat_map(|r| r.errors.iter().map(move |e| format!("- {}, {e}", r.cell)))
            .collect();
        if !failed.is_empty() {
            let _ = writeln!(md, "\nFailed runs:\n{}", failed.join("\n"));
        }

        let mut csv = String::from(
            "cell,group,base,seeds,probe_mean,probe_std,probe_ci_low,probe_ci_high,\
             probe_diff,probe_diff_low,probe_diff_high,knn_mean,knn_std,knn_ci_low,knn_ci_high,\
             knn_diff,knn_diff_low,knn_diff_high,random_probe_mean\n",
        );
        let num = |v: f64| {
            if v.is_finite() {
                format!("{v:.6}")
            } else {
                String::new()
            }
        };
        for r in &rows {
            let (pl, ph) = r.probe.interval();
            let (kl, kh) = r.knn.interval();
            let d = |s: &Option<Summary>| match s {
                Some(s) => {
                    let (l, h) = s.interval();
                    format!("{},{},{}", num(s.mean), num(l), num(h))
                }
                None => ",,".into(),
            };
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                r.cell.replace(',', ";"),
                r.group,
                r.base.replace(',', ";"),
                r.probe.n,
                num(r.probe.mean),
                num(r.probe.std),
                num(pl),
                num(ph),
                d(&r.probe_diff),
                num(r.knn.mean),
                num(r.knn.std),
                num(kl),
                num(kh),
                d(&r.knn_diff),
                num(r.random_probe.mean),
            );
        }

        let mut cost_csv = String::from("cell,runs,train_s,eval_s,views_per_s,peak_mib,total_min");
        md += "\nCost per run (this machine; means over seeds):\n\n";
        md += "| cell | runs | train s | eval s | views/s | peak MiB | total min |";
        if price_per_hour.is_some() {
            md += " price |";
            cost_csv += ",price";
        }
        md += "\n|---|---|---|---|---|---|---|";
        md += if price_per_hour.is_some() {
            "---|\n"
        } else {
            "\n"
        };
        cost_csv += "\n";
        let mut total = 0.0;
        for r in &rows {
            let minutes = (r.cost[0] + r.cost[1]) * r.runs as f64 / 60.0;
            if minutes.is_finite() {
                total += minutes;
            }
            let _ = write!(
                md,
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |",
                r.cell, r.runs, r.cost[0], r.cost[1], r.cost[2], r.cost[3], minutes
            );
            let _ = write!(
                cost_csv,
                "{},{},{:.2},{:.2},{:.1},{:.1},{:.3}",
                r.cell.replace(',', ";"),
                r.runs,
                r.cost[0],
                r.cost[1],
                r.cost[2],
                r.cost[3],
                minutes
            );
            if let Some(p) = price_per_hour {
                let _ = write!(md, " {:.4} |", minutes / 60.0 * p);
                let _ = write!(cost_csv, ",{:.4}", minutes / 60.0 * p);
            }
            md += "\n";
            cost_csv += "\n";
        }
        let _ = writeln!(md, "\nTotal: {total:.1} min of training and evaluation.");
        Self {
            rows,
            markdown: md,
            csv,
            cost_csv,
        }
    }
}

/// Writes `table.md`, `table.csv`, `cost.csv`, `bars.png` and `curves.png`
/// into the study directory `out`.
///
/// # Errors
/// A file cannot be written.
pub fn write_report(
    out: &Path,
    study: &Study,
    report: &Report,
    results: &[CellResult],
) -> Result<()> {
    cssl_train::write_atomic(&out.join("table.md"), report.markdown.as_bytes())?;
    cssl_train::write_atomic(&out.join("table.csv"), report.csv.as_bytes())?;
    cssl_train::write_atomic(&out.join("cost.csv"), report.cost_csv.as_bytes())?;
    cssl_train::write_atomic(&out.join("bars.png"), &bars(study, report).encode_png())?;
    cssl_train::write_atomic(
        &out.join("curves.png"),
        &curves(study, results).encode_png(),
    )?;
    Ok(())
}

/// Linear probe and kNN per cell: bars at the mean, whiskers at the 95%
/// interval, one colour per group.
fn bars(study: &Study, report: &Report) -> Canvas {
    let groups: Vec<String> = {
        let mut g: Vec<String> = report.rows.iter().map(|r| r.group.clone()).collect();
        g.dedup();
        g
    };
    let chart = |name: &str, pick: fn(&Row) -> (Summary, Option<Summary>)| {
        let bars: Vec<Bar> = report
            .rows
            .iter()
            .map(|r| {
                let (s, d) = pick(r);
                let interval = s.half_width.is_finite().then(|| {
                    let (lo, hi) = s.interval();
                    (lo * 100.0, hi * 100.0)
                });
                let note = match (s.n, d) {
                    (0, _) => "failed".to_string(),
                    (_, Some(d)) if d.n > 0 => {
                        format!("{:.2} ({:+.2})", s.mean * 100.0, d.mean * 100.0)
                    }
                    _ => format!("{:.2}", s.mean * 100.0),
                };
                Bar {
                    label: r.cell.clone(),
                    value: s.mean * 100.0,
                    interval,
                    color: groups.iter().position(|g| *g == r.group).unwrap_or(0),
                    note: Some(note),
                }
            })
            .collect();
        // One group: a dashed line at its base cell's mean.
        let reference = (groups.len() == 1)
            .then(|| report.rows.first())
            .flatten()
            .map(|r| (format!("base: {}", r.cell), pick(r).0.mean * 100.0))
            .filter(|(_, v)| v.is_finite());
        BarChart {
            title: format!(
                "{}: {name} %, mean and 95% CI, {} seeds (paired diff. to base)",
                study.name,
                study.seeds.len()
            ),
            x_label: format!("{name} test accuracy %"),
            bars,
            reference,
            range: None,
        }
        .render(1100)
    };
    let probe = chart("linear probe", |r| (r.probe, r.probe_diff));
    let knn = chart("kNN", |r| (r.knn, r.knn_diff));
    let mut c = Canvas::new(1100, probe.height() + knn.height());
    c.blit(&probe, 0, 0);
    c.blit(&knn, 0, probe.height());
    c
}

/// One panel per cell: each seed's training loss over epochs.
fn curves(study: &Study, results: &[CellResult]) -> Canvas {
    let charts: Vec<LineChart> = study
        .cells
        .iter()
        .filter(|c| results.iter().any(|r| r.cell == c.label))
        .map(|cell| {
            let series = results
                .iter()
                .filter(|r| r.cell == cell.label && r.status == Status::Ok)
                .filter_map(|r| {
                    let (header, rows) =
                        cssl_train::read_steps_csv(&r.run_dir.join("steps.csv")).ok()?;
                    let e = header.iter().position(|h| h == "epoch")?;
                    let l = header.iter().position(|h| h == cssl_train::LOSS)?;
                    let seed = study.seeds.iter().position(|s| *s == r.seed).unwrap_or(0);
                    Some(Series {
                        color: Some(seed),
                        ..Series::new(
                            format!("seed {}", r.seed),
                            rows.iter().map(|row| (row[e], row[l])).collect(),
                        )
                    })
                })
                .collect();
            LineChart {
                title: format!("{}: loss", cell.label),
                x_label: "epoch".into(),
                y_label: String::new(),
                series,
                log_y: false,
            }
        })
        .collect();
    grid(&charts, 3, (560, 340))
}
