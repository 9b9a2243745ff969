//! A criterion [`Measurement`] of the benchmarking thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`, through [`current_thread_cpu`]) instead of wall time: on a
//! shared box the thread is descheduled while other jobs run, which wall time counts and CPU
//! time does not, so figures compare with baselines that count CPU time too (`bench/run.sh
//! crypto`: intel-ipsec-mb's and OpenSSL's). Values are nanoseconds, as with `WallTime`, so
//! criterion's `estimates.json` reads the same.

use std::time::Duration;

use akagate_bench::cputime::current_thread_cpu;
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::Throughput;

/// Thread CPU time as a criterion measurement (`Criterion::default().with_measurement`).
pub struct ThreadCpu;

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        current_thread_cpu()
    }

    fn end(&self, started: Duration) -> Duration {
        current_thread_cpu().saturating_sub(started)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuNanos
    }
}

/// Prints nanoseconds of CPU time in the unit that suits the typical value.
struct CpuNanos;

/// The unit for `ns` nanoseconds and its size in nanoseconds.
fn time_unit(ns: f64) -> (&'static str, f64) {
    match ns {
        n if n < 1e3 => ("ns", 1.0),
        n if n < 1e6 => ("µs", 1e3),
        n if n < 1e9 => ("ms", 1e6),
        _ => ("s", 1e9),
    }
}

impl ValueFormatter for CpuNanos {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (unit, div) = time_unit(typical);
        values.iter_mut().for_each(|v| *v /= div);
        unit
    }

    fn scale_throughputs(
        &self,
        typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        // Per CPU-second: the amount per iteration over the CPU time of one.
        let (amount, units): (f64, [&'static str; 4]) = match *throughput {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => {
                (b as f64, ["B/s", "KiB/s", "MiB/s", "GiB/s"])
            }
            Throughput::Elements(e) => (e as f64, ["elem/s", "Kelem/s", "Melem/s", "Gelem/s"]),
        };
        let per_s = |ns: f64| amount * 1e9 / ns;
        let step = match *throughput {
            Throughput::Elements(_) | Throughput::BytesDecimal(_) => 1000.0,
            Throughput::Bytes(_) => 1024.0,
        };
        let mut k = 0;
        let mut div = 1.0;
        while k < 3 && per_s(typical) / div >= step {
            div *= step;
            k += 1;
        }
        values.iter_mut().for_each(|v| *v = per_s(*v) / div);
        units[k]
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}
