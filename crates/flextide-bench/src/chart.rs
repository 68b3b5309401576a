//! The SVG chart: W2 burn-down throughput and W4 idle latency per backend,
//! library beside raw client, on log scales.

use plotters::prelude::*;

use crate::report::Report;

type Bars = Vec<(String, Option<f64>, Option<f64>)>;

fn bars(r: &Report, id: &str, latency: bool) -> Bars {
    r.backends
        .iter()
        .filter(|b| b.status == "ok")
        .filter_map(|b| {
            let row = b.rows.iter().find(|x| x.id == id)?;
            let v = |c: &crate::run::Cell| {
                c.figure().and_then(|f| {
                    if latency {
                        f.latency.map(|l| l.p50_us as f64 / 1000.0)
                    } else {
                        Some(f.rate)
                    }
                })
            };
            Some((b.name.clone(), v(&row.library), v(&row.raw)))
        })
        .filter(|(_, l, r)| l.is_some() || r.is_some())
        .collect()
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    unit: &str,
    data: &Bars,
) -> Result<(), String> {
    let values: Vec<f64> = data
        .iter()
        .flat_map(|(_, l, r)| [*l, *r])
        .flatten()
        .filter(|v| *v > 0.0)
        .collect();
    if values.is_empty() {
        return Ok(());
    }
    let lo = values.iter().cloned().fold(f64::MAX, f64::min) / 3.0;
    let hi = values.iter().cloned().fold(0.0, f64::max) * 3.0;
    let n = data.len() as f64;
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(10)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..n, (lo..hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc(unit)
        .y_label_formatter(&|v| {
            if *v >= 1000.0 {
                format!("{:.0}k", v / 1000.0)
            } else if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        })
        .draw()
        .map_err(err)?;
    let lib_color = RGBColor(31, 119, 180);
    let raw_color = RGBColor(255, 127, 14);
    chart
        .draw_series(data.iter().enumerate().filter_map(|(i, (_, l, _))| {
            l.map(|v| {
                Rectangle::new(
                    [(i as f64 + 0.12, lo), (i as f64 + 0.48, v)],
                    lib_color.filled(),
                )
            })
        }))
        .map_err(err)?
        .label("library")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], lib_color.filled()));
    chart
        .draw_series(data.iter().enumerate().filter_map(|(i, (_, _, r))| {
            r.map(|v| {
                Rectangle::new(
                    [(i as f64 + 0.52, lo), (i as f64 + 0.88, v)],
                    raw_color.filled(),
                )
            })
        }))
        .map_err(err)?
        .label("raw client")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], raw_color.filled()));
    chart
        .draw_series(data.iter().enumerate().map(|(i, (name, _, _))| {
            Text::new(
                name.clone(),
                (i as f64 + 0.15, lo * 1.25),
                ("sans-serif", 13).into_font().color(&BLACK),
            )
        }))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// The chart as SVG text.
pub(crate) fn svg(r: &Report) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1100, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (left, right) = root.split_horizontally(550);
        panel(
            &left,
            "W2 burn-down (msg/s, higher is better)",
            "messages per second",
            &bars(r, "w2", false),
        )?;
        panel(
            &right,
            "W4 idle push-to-pop p50 (ms, lower is better)",
            "milliseconds",
            &bars(r, "w4", true),
        )?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}
