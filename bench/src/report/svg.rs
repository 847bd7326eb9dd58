//! A hand-written SVG line chart (polylines over a linear x axis and a linear or logarithmic
//! y axis, with ticks and a legend) — enough for memory against connections, or reconnections
//! against time, without a plotting crate. A log y axis keeps a 1 KB-per-connection line and a
//! 137 KB-per-connection line readable on one chart.

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// (x, y) points in drawing order.
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 6] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// A "nice" tick step for a range of `span` with about `n` ticks.
fn tick_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn label(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v.abs() >= 1e3 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}

/// Whether `series` end so many orders of magnitude apart that a log y axis reads better.
pub fn wants_log_y(series: &[Series]) -> bool {
    let last: Vec<f64> = series
        .iter()
        .filter_map(|s| s.points.last().map(|p| p.1))
        .filter(|y| y.is_finite() && *y > 0.0)
        .collect();
    let (lo, hi) = last
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &y| (lo.min(y), hi.max(y)));
    last.len() > 1 && hi / lo > 20.0
}

/// The chart as an SVG document. The x axis starts at 0; the y axis at 0 (linear) or at the
/// power of ten below the smallest value (`log_y`, which leaves out values ≤ 0).
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    log_y: bool,
    series: &[Series],
) -> String {
    let ok = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite() && (!log_y || p.1 > 0.0);
    let (mut xmax, mut ymax, mut ymin) = (0f64, 0f64, f64::MAX);
    for &(x, y) in series.iter().flat_map(|s| s.points.iter()).filter(ok) {
        xmax = xmax.max(x);
        ymax = ymax.max(y);
        ymin = ymin.min(y);
    }
    let xstep = tick_step(xmax.max(1.0), 6.0);
    let ystep = tick_step(ymax.max(1.0), 6.0);
    let xmax = (xmax / xstep).ceil().max(1.0) * xstep;
    // Linear: 0..top; log: exponents lo..hi of ten.
    let (ylo, yhi) = if log_y {
        let lo = if ymin == f64::MAX {
            0.0
        } else {
            ymin.log10().floor()
        };
        (lo, ymax.log10().ceil().max(lo + 1.0))
    } else {
        (0.0, (ymax / ystep).ceil().max(1.0) * ystep)
    };
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + x / xmax * pw;
    let sy = |y: f64| {
        let frac = if log_y {
            (y.log10() - ylo) / (yhi - ylo)
        } else {
            y / yhi
        };
        TOP + ph - frac * ph
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        W / 2.0,
        esc(title)
    );
    let mut x = 0.0;
    while x <= xmax + xstep / 2.0 {
        s += &format!(
            "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{2}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
            sx(x), TOP, TOP + ph, TOP + ph + 16.0, label(x)
        );
        x += xstep;
    }
    let yticks: Vec<f64> = if log_y {
        (ylo as i32..=yhi as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        (0..)
            .map(|i| f64::from(i) * ystep)
            .take_while(|y| *y <= yhi + ystep / 2.0)
            .collect()
    };
    for y in yticks {
        s += &format!(
            "<line x1=\"{0}\" y1=\"{1:.1}\" x2=\"{2}\" y2=\"{1:.1}\" stroke=\"#ddd\"/><text x=\"{3}\" y=\"{4:.1}\" text-anchor=\"end\">{5}</text>\n",
            LEFT, sy(y), LEFT + pw, LEFT - 6.0, sy(y) + 4.0, label(y)
        );
    }
    s += &format!(
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"18\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {:.1})\">{}</text>\n",
        LEFT + pw / 2.0,
        H - 18.0,
        esc(x_label),
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        esc(y_label)
    );
    for (i, ser) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = ser
            .points
            .iter()
            .filter(ok)
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
            points.join(" ")
        );
        for p in &points {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            s += &format!("<circle cx=\"{px}\" cy=\"{py}\" r=\"3\" fill=\"{color}\"/>\n");
        }
        let ly = TOP + 10.0 + i as f64 * 20.0;
        s += &format!(
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{color}\" stroke-width=\"3\"/><text x=\"{3}\" y=\"{4}\">{5}</text>\n",
            LEFT + pw + 12.0,
            ly,
            LEFT + pw + 32.0,
            LEFT + pw + 38.0,
            ly + 4.0,
            esc(&ser.name)
        );
    }
    s += "</svg>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_is_svg_with_one_polyline_per_series() {
        let svg = line_chart(
            "RSS <vs> conns",
            "connections",
            "MiB",
            false,
            &[
                Series {
                    name: "herald".into(),
                    points: vec![(1000.0, 10.0), (19000.0, 28.0)],
                },
                Series {
                    name: "nchan".into(),
                    points: vec![(1000.0, 20.0), (19000.0, 200.0), (f64::NAN, 1.0)],
                },
            ],
        );
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("RSS &lt;vs&gt; conns"));
        assert!(!svg.contains("NaN"));
        assert_eq!(svg.matches("<circle").count(), 4);
    }

    #[test]
    fn log_axis_for_lines_orders_of_magnitude_apart() {
        let series = [
            Series {
                name: "small".into(),
                points: vec![(0.0, 10.0), (19000.0, 30.0)],
            },
            Series {
                name: "big".into(),
                points: vec![(0.0, 3.0), (19000.0, 2500.0)],
            },
        ];
        assert!(wants_log_y(&series));
        assert!(!wants_log_y(&series[..1]));
        let svg = line_chart("t", "x", "y", true, &series);
        for tick in [">1<", ">10<", ">100<", ">1k<", ">10k<"] {
            assert!(svg.contains(tick), "{tick} missing");
        }
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(19000.0, 6.0), 5000.0);
        assert!((tick_step(1.0, 6.0) - 0.2).abs() < 1e-12);
        assert_eq!(tick_step(130.0, 6.0), 50.0);
    }
}
