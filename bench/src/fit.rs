//! Least-squares line fit: the cost of one more connection is the slope of memory against
//! connection count over several sizes, which cancels the process's fixed baseline.

use serde::Serialize;

/// A fitted line `y = slope · x + intercept` and how well it fits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fit {
    /// Change of y per unit of x (bytes per connection).
    pub slope: f64,
    /// y at x = 0 (the baseline).
    pub intercept: f64,
    /// Coefficient of determination: 1 = every point on the line; low values flag noise.
    pub r2: f64,
}

/// Fits a line through `points`; `None` with fewer than two distinct x values or a
/// non-finite input.
pub fn least_squares(points: &[(f64, f64)]) -> Option<Fit> {
    if points.len() < 2 || points.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy == 0.0 {
        1.0
    } else {
        sxy * sxy / (sxx * syy)
    };
    Some(Fit {
        slope,
        intercept: my - slope * mx,
        r2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_line() {
        let f = least_squares(&[(1000.0, 3000.0), (2000.0, 5000.0), (4000.0, 9000.0)]).unwrap();
        assert!((f.slope - 2.0).abs() < 1e-9);
        assert!((f.intercept - 1000.0).abs() < 1e-6);
        assert!((f.r2 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn noise_lowers_r2() {
        let f = least_squares(&[(1.0, 1.0), (2.0, 5.0), (3.0, 2.0), (4.0, 6.0)]).unwrap();
        assert!(f.r2 < 0.9 && f.r2 > 0.0);
    }

    #[test]
    fn degenerate_inputs() {
        assert!(least_squares(&[(1.0, 1.0)]).is_none());
        assert!(least_squares(&[(1.0, 1.0), (1.0, 2.0)]).is_none());
        assert!(least_squares(&[(1.0, f64::NAN), (2.0, 2.0)]).is_none());
    }
}
