//! PNG plots written next to a trained model version: the training curves (loss and
//! validation macro-F1 per epoch) and the test split's confusion matrix.
//!
//! Text is drawn with ab_glyph from DejaVu Sans, loaded at run time (Debian
//! `fonts-dejavu-core`, installed by `scripts/setup`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, anyhow, ensure};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// The font every plot uses; `EMPATHY_PLOT_FONT` overrides the path.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FAMILY: &str = "sans-serif";

/// One epoch of training as `fit` reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochPoint {
    pub epoch: usize,
    pub loss: f64,
    pub validation_macro_f1: f64,
}

/// Parses a progress line "epoch N (T s): loss X, validation macro-F1 Y[...]".
pub fn parse_epoch_line(line: &str) -> Option<EpochPoint> {
    let rest = line.trim().strip_prefix("epoch ")?;
    let (epoch, rest) = rest.split_once(' ')?;
    let epoch = epoch.parse().ok()?;
    let (_, rest) = rest.split_once("loss ")?;
    let (loss, rest) = rest.split_once(',')?;
    let loss = loss.trim().parse().ok()?;
    let (_, rest) = rest.split_once("macro-F1 ")?;
    let f1: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
        .collect();
    Some(EpochPoint {
        epoch,
        loss,
        validation_macro_f1: f1.parse().ok()?,
    })
}

/// Registers DejaVu Sans once per process; a clear error if the file is missing.
fn ensure_font() -> anyhow::Result<()> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let path = std::env::var_os("EMPATHY_PLOT_FONT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_FONT));
        let bytes = std::fs::read(&path).map_err(|e| {
            format!(
                "cannot read the plot font {} ({e}): install it with scripts/setup \
                 (Debian package fonts-dejavu-core) or point EMPATHY_PLOT_FONT at a .ttf",
                path.display()
            )
        })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        register_font(FAMILY, FontStyle::Normal, bytes)
            .map_err(|_| format!("{} is not a usable TrueType font", path.display()))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e}")
}

/// Two panels side by side: training loss, validation macro-F1, per epoch.
pub fn training_curves(points: &[EpochPoint], path: &Path) -> anyhow::Result<()> {
    ensure!(!points.is_empty(), "no epochs to plot");
    ensure_font()?;
    let root = BitMapBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (left, right) = root.split_horizontally(500);
    let last = points.iter().map(|p| p.epoch).max().unwrap_or(1).max(2);
    let best = points
        .iter()
        .max_by(|a, b| a.validation_macro_f1.total_cmp(&b.validation_macro_f1))
        .copied();
    panel(
        &left,
        "training loss",
        "loss",
        last,
        points.iter().map(|p| (p.epoch, p.loss)).collect(),
        &BLUE,
        None,
    )?;
    let f1_title = match best {
        Some(b) => format!(
            "validation macro-F1 (best {:.4}, epoch {})",
            b.validation_macro_f1, b.epoch
        ),
        None => "validation macro-F1".to_string(),
    };
    panel(
        &right,
        &f1_title,
        "macro-F1",
        last,
        points
            .iter()
            .map(|p| (p.epoch, p.validation_macro_f1))
            .collect(),
        &RED,
        best.map(|b| (b.epoch, b.validation_macro_f1)),
    )?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    last_epoch: usize,
    series: Vec<(usize, f64)>,
    color: &RGBColor,
    mark: Option<(usize, f64)>,
) -> anyhow::Result<()> {
    let finite = series.iter().map(|p| p.1).filter(|v| v.is_finite());
    let lo = finite.clone().fold(f64::INFINITY, f64::min);
    let hi = finite.fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.1).max(1e-3);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(1usize..last_epoch, (lo - pad)..(hi + pad))
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 15))
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(
            series.iter().copied(),
            color.stroke_width(2),
        ))
        .map_err(plot_error)?;
    chart
        .draw_series(
            series
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
        )
        .map_err(plot_error)?;
    if let Some((x, y)) = mark {
        chart
            .draw_series(std::iter::once(Circle::new(
                (x, y),
                7,
                BLACK.stroke_width(2),
            )))
            .map_err(plot_error)?;
    }
    Ok(())
}

/// A square confusion matrix, `counts[actual][predicted]`: each cell shows its count
/// and is coloured by its share of the row (recall on the diagonal).
pub fn confusion_matrix(
    counts: &[Vec<usize>],
    labels: &[&str],
    title: &str,
    path: &Path,
) -> anyhow::Result<()> {
    let n = labels.len();
    ensure!(
        n > 0 && counts.len() == n && counts.iter().all(|r| r.len() == n),
        "the confusion matrix must be {n}x{n}"
    );
    ensure_font()?;
    let root = BitMapBackend::new(path, (620, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(90)
        .build_cartesian_2d(0..n, 0..n)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(n + 1)
        .y_labels(n + 1)
        .x_label_formatter(&|_| String::new())
        .y_label_formatter(&|_| String::new())
        .x_desc("predicted")
        .y_desc("actual")
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(plot_error)?;
    // Class names centred on the cells (row 0 at the top).
    let label_style = (FAMILY, 15).into_font().color(&BLACK);
    for (i, name) in labels.iter().enumerate() {
        let (w, h) = root
            .estimate_text_size(name, &label_style)
            .map_err(plot_error)?;
        let (x0, y_bottom) = chart.backend_coord(&(i, 0));
        let (x1, _) = chart.backend_coord(&(i + 1, 0));
        root.draw_text(
            name,
            &label_style,
            ((x0 + x1) / 2 - w as i32 / 2, y_bottom + 6),
        )
        .map_err(plot_error)?;
        let (x_left, y0) = chart.backend_coord(&(0, n - 1 - i));
        let (_, y1) = chart.backend_coord(&(0, n - i));
        root.draw_text(
            name,
            &label_style,
            (x_left - w as i32 - 6, (y0 + y1) / 2 - h as i32 / 2),
        )
        .map_err(plot_error)?;
    }
    for (actual, row) in counts.iter().enumerate() {
        let total: usize = row.iter().sum();
        let y = n - 1 - actual;
        for (predicted, &count) in row.iter().enumerate() {
            let share = if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            };
            // White to dark blue with the row share.
            let shade = |full: u8| (255.0 - (255.0 - f64::from(full)) * share).round() as u8;
            let fill = RGBColor(shade(8), shade(48), shade(107));
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(predicted, y), (predicted + 1, y + 1)],
                    fill.filled(),
                )))
                .map_err(plot_error)?;
            let ink = if share > 0.5 { WHITE } else { BLACK };
            let text = format!("{count}\n{:.0}%", share * 100.0);
            let (cx, cy) = chart.backend_coord(&(predicted, y + 1));
            let (ex, ey) = chart.backend_coord(&(predicted + 1, y));
            let style = (FAMILY, 18).into_font().color(&ink);
            for (k, line) in text.lines().enumerate() {
                let (w, h) = root.estimate_text_size(line, &style).map_err(plot_error)?;
                let x = (cx + ex) / 2 - w as i32 / 2;
                let y = (cy + ey) / 2 - h as i32 + k as i32 * (h as i32 + 4);
                root.draw_text(line, &style, (x, y)).map_err(plot_error)?;
            }
        }
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

/// Writes both plots into `dir`; returns their paths.
pub fn write_training_plots(
    dir: &Path,
    curve: &[EpochPoint],
    test_confusion: &[Vec<usize>],
    labels: &[&str],
) -> anyhow::Result<Vec<PathBuf>> {
    let curves = dir.join("training_curves.png");
    training_curves(curve, &curves)
        .with_context(|| format!("cannot write {}", curves.display()))?;
    let matrix = dir.join("confusion_matrix.png");
    confusion_matrix(
        test_confusion,
        labels,
        "test split: counts, row share",
        &matrix,
    )
    .with_context(|| format!("cannot write {}", matrix.display()))?;
    Ok(vec![curves, matrix])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fit_progress_lines() {
        assert_eq!(
            parse_epoch_line("epoch 3 (1.2 s): loss 0.7312, validation macro-F1 0.6845 *"),
            Some(EpochPoint {
                epoch: 3,
                loss: 0.7312,
                validation_macro_f1: 0.6845
            })
        );
        assert_eq!(parse_epoch_line("split (seed 42): train 1"), None);
        assert_eq!(parse_epoch_line("saved models/v0003 (12 s in all)"), None);
    }

    /// Decodes a PNG; returns (width, height, distinct RGB colours).
    fn decode(path: &Path) -> (u32, u32, usize) {
        let file = std::fs::File::open(path).expect("png exists");
        let mut reader = png::Decoder::new(std::io::BufReader::new(file))
            .read_info()
            .expect("valid png header");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("valid png data");
        let channels = info.color_type.samples();
        let colours: std::collections::HashSet<[u8; 3]> = buf[..info.buffer_size()]
            .chunks(channels)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        (info.width, info.height, colours.len())
    }

    #[test]
    fn renders_both_plots_as_real_pngs() {
        if !Path::new(DEFAULT_FONT).exists() && std::env::var_os("EMPATHY_PLOT_FONT").is_none() {
            panic!("{DEFAULT_FONT} is missing: run scripts/setup (fonts-dejavu-core)");
        }
        let dir = std::env::temp_dir().join(format!("empathy-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let curve: Vec<EpochPoint> = (1..=12)
            .map(|e| EpochPoint {
                epoch: e,
                loss: 1.1 / e as f64 + 0.3,
                validation_macro_f1: 0.5 + 0.2 * (1.0 - 1.0 / e as f64),
            })
            .collect();
        let counts = vec![vec![50, 8, 2], vec![10, 120, 15], vec![3, 9, 80]];
        let paths =
            write_training_plots(&dir, &curve, &counts, &["negative", "neutral", "positive"])
                .expect("plots written");
        let (w, h, colours) = decode(&paths[0]);
        assert_eq!((w, h), (1000, 420));
        assert!(colours > 20, "curves look empty: {colours} colours");
        let (w, h, colours) = decode(&paths[1]);
        assert_eq!((w, h), (620, 600));
        assert!(colours > 20, "matrix looks empty: {colours} colours");
        if std::env::var_os("EMPATHY_KEEP_PLOTS").is_none() {
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}
