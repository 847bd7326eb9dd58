//! # Recommended replicas — the autoscaling signal
//!
//! Every interval the processor feeds this estimator the total lag of its partitions and its
//! running count of settled records; it answers how many processors this processor's share of
//! the load needs. Summed over all processors (`ceil(sum(herald_processor_recommended_replicas))`)
//! that is the fleet's recommended replica count. The formula, documented for operators in
//! `docs/operations.md` ("Processor autoscaling"):
//!
//! ```text
//! throughput  t = settled records / Δt
//! growth      g = (lag − previous lag) / Δt
//! arrival     a = max(0, t + g)                    records/s arriving for my partitions
//! capacity    c = EWMA of t over saturated intervals (lag above `saturation_lag` at both ends),
//!                 never below the best t seen since; starts at `assumed_capacity`
//! demand      d = a + lag / drain_target            keep up, and clear the backlog in time
//! share       r = d / (c × target_utilization)
//! ```
//!
//! Pure: time comes in as seconds from the caller.

/// Tuning of the estimator (from the processor's configuration).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoscaleParams {
    /// Records/s one processor is assumed to settle until a saturated interval measures it.
    pub assumed_capacity: f64,
    /// Seconds in which an existing backlog should be cleared.
    pub drain_target_secs: f64,
    /// Fraction of measured capacity a processor should run at (headroom for bursts).
    pub target_utilization: f64,
    /// Lag (records) above which the processor counts as saturated: it had work queued for the
    /// whole interval, so its throughput is its capacity.
    pub saturation_lag: u64,
    /// Weight of a new saturated measurement in the capacity average (0 < α ≤ 1).
    pub ewma_alpha: f64,
}

/// What one interval measured and recommends; every field is also exported as a gauge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Records settled per second over the interval.
    pub throughput: f64,
    /// Lag growth per second over the interval (negative while draining).
    pub lag_growth: f64,
    /// Records per second arriving on this processor's partitions.
    pub arrival: f64,
    /// Records per second this processor is believed able to settle.
    pub capacity: f64,
    /// This processor's share of the recommended replica count.
    pub recommended_replicas: f64,
}

/// The last sample, to difference against.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Seconds on the caller's clock.
    at: f64,
    /// Total lag then.
    lag: u64,
    /// Settled counter then.
    settled: u64,
}

/// Estimator state across intervals.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    /// Tuning.
    params: AutoscaleParams,
    /// Previous sample (none before the first observation).
    last: Option<Sample>,
    /// Current capacity belief (records/s).
    capacity: f64,
}

impl Autoscaler {
    /// An estimator starting from `params.assumed_capacity`.
    pub fn new(params: AutoscaleParams) -> Autoscaler {
        Autoscaler {
            capacity: params.assumed_capacity,
            params,
            last: None,
        }
    }

    /// Feeds one sample: `now_secs` on any monotonic clock, the total `lag` of this
    /// processor's partitions, and the running total of settled records. Returns `None` for the
    /// first sample or when no time passed.
    pub fn observe(&mut self, now_secs: f64, lag: u64, settled: u64) -> Option<Estimate> {
        let current = Sample {
            at: now_secs,
            lag,
            settled,
        };
        let prev = self.last.replace(current)?;
        let dt = now_secs - prev.at;
        if dt <= 0.0 {
            self.last = Some(prev);
            return None;
        }
        let p = &self.params;
        let throughput = settled.saturating_sub(prev.settled) as f64 / dt;
        let lag_growth = (lag as f64 - prev.lag as f64) / dt;
        let arrival = (throughput + lag_growth).max(0.0);
        let saturated = prev.lag > p.saturation_lag && lag > p.saturation_lag;
        if saturated {
            self.capacity = p.ewma_alpha * throughput + (1.0 - p.ewma_alpha) * self.capacity;
        }
        self.capacity = self.capacity.max(throughput).max(1.0);
        let demand = arrival + lag as f64 / p.drain_target_secs;
        let recommended_replicas = demand / (self.capacity * p.target_utilization);
        Some(Estimate {
            throughput,
            lag_growth,
            arrival,
            capacity: self.capacity,
            recommended_replicas,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> AutoscaleParams {
        AutoscaleParams {
            assumed_capacity: 1000.0,
            drain_target_secs: 60.0,
            target_utilization: 0.5,
            saturation_lag: 100,
            ewma_alpha: 0.5,
        }
    }

    #[test]
    fn first_sample_and_zero_interval_give_nothing() {
        let mut a = Autoscaler::new(params());
        assert_eq!(a.observe(0.0, 0, 0), None);
        assert_eq!(a.observe(0.0, 0, 10), None);
    }

    #[test]
    fn idle_processor_recommends_zero() {
        let mut a = Autoscaler::new(params());
        a.observe(0.0, 0, 0);
        let e = a.observe(10.0, 0, 0).unwrap();
        assert_eq!(e.recommended_replicas, 0.0);
        assert_eq!(e.capacity, 1000.0);
    }

    #[test]
    fn keeping_up_at_a_quarter_of_capacity_is_half_a_replica() {
        let mut a = Autoscaler::new(params());
        a.observe(0.0, 0, 0);
        // 250/s settled, no lag: arrival 250, capacity 1000 at 50 % utilisation → 0.5.
        let e = a.observe(10.0, 0, 2500).unwrap();
        assert_eq!(e.throughput, 250.0);
        assert_eq!(e.arrival, 250.0);
        assert!((e.recommended_replicas - 0.5).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn saturation_measures_capacity_and_growing_lag_asks_for_more() {
        let mut a = Autoscaler::new(params());
        a.observe(0.0, 1_000, 0);
        // Saturated for 10 s: settled 400/s while lag grew by 600/s → arrival 1000/s.
        let e = a.observe(10.0, 7_000, 4_000).unwrap();
        assert_eq!(e.throughput, 400.0);
        assert_eq!(e.lag_growth, 600.0);
        assert_eq!(e.arrival, 1000.0);
        // EWMA: 0.5·400 + 0.5·1000 = 700 (the assumption decays towards the measurement).
        assert_eq!(e.capacity, 700.0);
        let expected = (1000.0 + 7000.0 / 60.0) / (700.0 * 0.5);
        assert!((e.recommended_replicas - expected).abs() < 1e-9);
        assert!(e.recommended_replicas > 3.0);
        // A second saturated interval pulls capacity further towards 400.
        let e = a.observe(20.0, 13_000, 8_000).unwrap();
        assert_eq!(e.capacity, 550.0);
    }

    #[test]
    fn unsaturated_throughput_only_raises_capacity() {
        let mut a = Autoscaler::new(params());
        a.observe(0.0, 0, 0);
        let e = a.observe(1.0, 0, 3000).unwrap();
        assert_eq!(e.capacity, 3000.0, "throughput proves capacity");
        let e = a.observe(2.0, 0, 3100).unwrap();
        assert_eq!(
            e.capacity, 3000.0,
            "low unsaturated throughput proves nothing"
        );
    }

    #[test]
    fn draining_backlog_counts_lag_not_negative_growth_as_demand() {
        let mut a = Autoscaler::new(params());
        a.observe(0.0, 6_000, 0);
        // Lag falls 500/s while settling 1000/s: arrival is 500/s.
        let e = a.observe(10.0, 1_000, 10_000).unwrap();
        assert_eq!(e.arrival, 500.0);
        assert!(e.recommended_replicas > 0.0);
    }
}
