//! Distributions of Kolmogorov–Smirnov statistics, for the p-values of the two-sample test.
//!
//! The choice between methods follows SciPy's `ks_2samp` and `kstwo`, so driftline's p-values
//! are the ones users get there:
//! - both samples up to 10,000 values: the exact distribution of the two-sample statistic,
//!   counted over lattice paths ([`two_sample_exact`]);
//! - larger samples: the one-sample distribution `D_n` with `n = round(n1·n2 / (n1 + n2))`
//!   ([`one_sample_sf`]), evaluated as Simard & L'Ecuyer (2011) recommend: Ruben–Gambino at
//!   the ends, the Durbin matrix (Marsaglia–Tsang–Wang) for small `n·x²`, the Pelz–Good
//!   expansion in the middle and Smirnov's exact one-sided tail (doubled) in the upper tail.

use statrs::function::gamma::ln_gamma;
use std::f64::consts::PI;

/// Sample sizes up to which the exact two-sample distribution is used.
pub const EXACT_MAX_N: usize = 10_000;

/// The exact two-sided p-value `P(D >= d)` of the two-sample statistic for samples of sizes
/// `m` and `n`, and `d` snapped to the lattice of attainable values (`h / lcm(m, n)`), as SciPy
/// reports it.
///
/// Equal sizes take the reflection sum ([`outside_square`], O(n)). Otherwise a uniformly random
/// monotone path from `(0, 0)` to `(m, n)` is walked forward; the probability mass that steps
/// out of the band `|i/m - j/n| < d` is summed as it leaves, so small p-values keep their
/// relative precision (no `1 - inside`).
pub fn two_sample_exact(m: usize, n: usize, d: f64) -> (f64, f64) {
    let lcm = (m / gcd(m, n)) as i128 * n as i128;
    let h = round_half_even(d * lcm as f64) as i128;
    let d = h as f64 / lcm as f64;
    if h <= 0 {
        return (d, 1.0);
    }
    if m == n {
        return (d, outside_square(n, h as usize));
    }
    (d, outside_band(m, n, h))
}

/// The mass of the lattice paths from `(0, 0)` to `(m, n)` that leave the band
/// `|i·n/g − j·m/g| < h` (`g = gcd(m, n)`).
fn outside_band(m: usize, n: usize, h: i128) -> f64 {
    let g = gcd(m, n);
    let (mg, ng) = ((m / g) as i128, (n / g) as i128);
    // Cell (i, j) is inside when |i·ng − j·mg| < h.
    let band = |i: usize| -> (usize, usize) {
        let c = i as i128 * ng;
        // j·mg > c − h  and  j·mg < c + h
        let lo = (c - h).div_euclid(mg) + 1;
        let hi = (c + h - 1).div_euclid(mg);
        (lo.max(0) as usize, hi.min(n as i128).max(-1) as usize)
    };
    let inside = |i: usize, j: usize| (i as i128 * ng - j as i128 * mg).abs() < h;
    let mut row = vec![0.0f64; n + 1];
    let mut next = vec![0.0f64; n + 1];
    row[0] = 1.0;
    let mut outside = 0.0f64;
    for i in 0..=m {
        let (lo, hi) = band(i);
        if lo > hi {
            break;
        }
        if i < m {
            let (nlo, nhi) = band(i + 1);
            if nlo <= nhi {
                next[nlo..=nhi].iter_mut().for_each(|v| *v = 0.0);
            }
        }
        for j in lo..=hi {
            let p = row[j];
            if p == 0.0 {
                continue;
            }
            let remaining = ((m - i) + (n - j)) as f64;
            if remaining == 0.0 {
                continue;
            }
            if j < n {
                let up = p * (n - j) as f64 / remaining;
                if inside(i, j + 1) {
                    row[j + 1] += up;
                } else {
                    outside += up;
                }
            }
            if i < m {
                let right = p * (m - i) as f64 / remaining;
                if inside(i + 1, j) {
                    next[j] += right;
                } else {
                    outside += right;
                }
            }
        }
        std::mem::swap(&mut row, &mut next);
    }
    outside.clamp(0.0, 1.0)
}

/// `P(D >= h/n)` for two samples of `n` values each, in O(n): by reflection,
/// `2 · Σ_k (−1)^(k+1) C(2n, n − k·h) / C(2n, n)`, summed from the innermost term outwards as
/// `2·A₁·(1 − A₂·(1 − A₃·(…)))`, each ratio `A_k` a product of `h` factors, so no term cancels
/// another (SciPy's `_compute_prob_outside_square` evaluates it the same way).
fn outside_square(n: usize, h: usize) -> f64 {
    let mut p = 0.0f64;
    for k in (1..=n / h).rev() {
        // C(2n, n − k·h) / C(2n, n − (k−1)·h)
        let mut ratio = 1.0f64;
        for j in 0..h {
            ratio = ratio * (n - k * h + 1 + j) as f64 / (n + (k - 1) * h + 1 + j) as f64;
        }
        p = ratio * (1.0 - p);
    }
    (2.0 * p).clamp(0.0, 1.0)
}

/// `P(D_n >= x)` for the one-sample two-sided Kolmogorov–Smirnov statistic `D_n`.
pub fn one_sample_sf(n: u64, x: f64) -> f64 {
    if n == 0 || x.is_nan() {
        return f64::NAN;
    }
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let nf = n as f64;
    let t = nf * x;
    if t <= 1.0 {
        // Ruben–Gambino: P(D_n <= x) = n!/n^n · (2t − 1)^n for 1/2n <= x <= 1/n.
        if t <= 0.5 {
            return 1.0;
        }
        let cdf = (ln_n_factorial_over_n_pow_n(n) + nf * (2.0 * t - 1.0).ln()).exp();
        return clip(1.0 - cdf);
    }
    if t >= nf - 1.0 {
        return clip(2.0 * (1.0 - x).powf(nf));
    }
    if x >= 0.5 {
        return clip(2.0 * smirnov(n, x));
    }
    let nx2 = t * x;
    if n <= 140 {
        if nx2 <= 4.0 {
            // SciPy uses Pomeranz's recursion above n·x² = 0.754693; the Durbin matrix computes
            // the same exact distribution.
            return clip(1.0 - durbin_cdf(n, x));
        }
        return clip(2.0 * smirnov(n, x));
    }
    if nx2 >= 370.0 {
        return 0.0;
    }
    if nx2 >= 2.2 {
        return clip(2.0 * smirnov(n, x));
    }
    let cdf = if n <= 100_000 && nf * x.powf(1.5) <= 1.4 { durbin_cdf(n, x) } else { pelz_good_cdf(n, x) };
    clip(1.0 - cdf)
}

/// Smirnov's one-sided `P(D+_n >= x)` by the Birnbaum–Tingey sum
/// `x · Σ_{j=0}^{⌊n(1−x)⌋} C(n, j) (1 − x − j/n)^(n−j) (x + j/n)^(j−1)`, in log space.
///
/// Up to [`SMIRNOV_SUM_MAX_TERMS`] terms it is summed term by term. Beyond, the terms are a
/// smooth function of `j` whose mass spreads over hundreds of thousands of terms, and the sum
/// equals the integral of that function to far below double precision (Euler–Maclaurin: the
/// end corrections vanish with the terms at the ends, the remainder with the derivatives); the
/// integral is taken by Gauss–Legendre panels over the range where the terms matter.
pub fn smirnov(n: u64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x >= 1.0 {
        return 0.0;
    }
    if (n as f64 * (1.0 - x)) > SMIRNOV_SUM_MAX_TERMS as f64 {
        return smirnov_integral(n, x);
    }
    smirnov_sum(n, x)
}

/// Above this many terms, [`smirnov`] integrates instead of summing.
pub const SMIRNOV_SUM_MAX_TERMS: u64 = 200_000;

/// ln of the Birnbaum–Tingey term at (real) `u`, without the constant `ln Γ(n + 1)`.
fn smirnov_term(nf: f64, x: f64, u: f64) -> f64 {
    -ln_gamma(u + 1.0) - ln_gamma(nf - u + 1.0) + (nf - u) * (1.0 - x - u / nf).ln() + (u - 1.0) * (x + u / nf).ln()
}

fn smirnov_integral(n: u64, x: f64) -> f64 {
    let nf = n as f64;
    let last = (nf * (1.0 - x)).floor() - 1.0;
    let t = |u: f64| smirnov_term(nf, x, u);
    // The terms rise to one peak and fall: find it by golden-section search.
    let (mut lo, mut hi) = (0.0f64, last);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    while hi - lo > 1.0 {
        let (a, b) = (hi - g * (hi - lo), lo + g * (hi - lo));
        if t(a) < t(b) {
            lo = a;
        } else {
            hi = b;
        }
    }
    let peak = (lo + hi) / 2.0;
    let top = t(peak);
    // Where the terms have fallen by e^-60 on each side: beyond, nothing counts.
    let edge = |mut inside: f64, mut outside: f64| {
        if t(outside) > top - 60.0 {
            return outside;
        }
        while (outside - inside).abs() > 1.0 {
            let mid = (inside + outside) / 2.0;
            if t(mid) > top - 60.0 {
                inside = mid;
            } else {
                outside = mid;
            }
        }
        outside
    };
    let (left, right) = (edge(peak, 0.0), edge(peak, last));
    // Gauss–Legendre, 20 nodes per panel, 64 panels.
    const PANELS: usize = 64;
    let width = (right - left) / PANELS as f64;
    let mut sum = 0.0;
    for p in 0..PANELS {
        let mid = left + (p as f64 + 0.5) * width;
        for (node, weight) in GAUSS_LEGENDRE_20 {
            for sign in [-1.0, 1.0] {
                sum += weight * (t(mid + sign * node * width / 2.0) - top).exp();
            }
        }
    }
    let integral = sum * width / 2.0;
    clip(x * integral * (top + ln_gamma(nf + 1.0)).exp())
}

/// Positive nodes and weights of the 20-point Gauss–Legendre rule on [−1, 1].
const GAUSS_LEGENDRE_20: [(f64, f64); 10] = [
    (0.07652652113349734, 0.15275338713072628),
    (0.22778585114164507, 0.14917298647260424),
    (0.37370608871541955, 0.1420961093183824),
    (0.5108670019508271, 0.1316886384491769),
    (0.636053680726515, 0.1181945319615186),
    (0.7463319064601508, 0.1019301198172407),
    (0.8391169718222188, 0.08327674157670471),
    (0.912234428251326, 0.06267204833410879),
    (0.9639719272779138, 0.040601429800386446),
    (0.993128599185095, 0.017614007139150893),
];

/// The Birnbaum–Tingey sum, term by term.
fn smirnov_sum(n: u64, x: f64) -> f64 {
    let nf = n as f64;
    let last = (nf * (1.0 - x)).floor() as u64;
    // ln C(n, j), summed up term by term with Kahan's compensation: with millions of terms the
    // rounding of a plain running sum would show in the sixth digit.
    let mut ln_binomial = 0.0f64;
    let mut compensation = 0.0f64;
    let mut max = f64::NEG_INFINITY;
    let mut scaled_sum = 0.0f64;
    let mut previous = f64::NEG_INFINITY;
    for j in 0..=last {
        let jf = j as f64;
        if j > 0 {
            let step = ((nf - jf + 1.0) / jf).ln() - compensation;
            let sum = ln_binomial + step;
            compensation = (sum - ln_binomial) - step;
            ln_binomial = sum;
        }
        let base = 1.0 - x - jf / nf;
        if base <= 0.0 {
            continue;
        }
        let term = ln_binomial + (nf - jf) * base.ln() + (jf - 1.0) * (x + jf / nf).ln();
        if term > max {
            scaled_sum = scaled_sum * (max - term).exp() + 1.0;
            max = term;
        } else {
            scaled_sum += (term - max).exp();
        }
        // The terms rise to one peak and fall; far past it they no longer count.
        if term < previous && term < max - 60.0 {
            break;
        }
        previous = term;
    }
    if scaled_sum == 0.0 {
        return 0.0;
    }
    clip(x * scaled_sum * max.exp())
}

/// `P(D_n <= d)` by the Durbin matrix (Marsaglia, Tsang and Wang 2003): the `k`-th diagonal
/// element of `n!/n^n · H^n`, with powers of two split off to stay in range.
fn durbin_cdf(n: u64, d: f64) -> f64 {
    if d >= 1.0 {
        return 1.0;
    }
    let nd = n as f64 * d;
    if nd <= 0.5 {
        return 0.0;
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let size = 2 * k - 1;
    let mut v = vec![0.0f64; size];
    let mut w = vec![0.0f64; size];
    let mut factorial_inverse = 1.0f64;
    for j in 1..=size {
        w[j - 1] = factorial_inverse;
        factorial_inverse /= j as f64;
        v[j - 1] = (1.0 - h.powi(j as i32)) * factorial_inverse;
    }
    let tail = (2.0 * h - 1.0).max(0.0).powi(size as i32) - 2.0 * h.powi(size as i32);
    v[size - 1] = (1.0 + tail) * factorial_inverse;

    let mut matrix = vec![0.0f64; size * size];
    for col in 1..size {
        for row in (col - 1)..size {
            matrix[row * size + col] = w[row + 1 - col];
        }
    }
    for row in 0..size {
        matrix[row * size] = v[row];
    }
    for col in 0..size {
        matrix[(size - 1) * size + col] = v[size - 1 - col];
    }

    const SCALE_EXPONENT: i32 = 128;
    let scale = 2f64.powi(SCALE_EXPONENT);
    let mut power = identity(size);
    let mut exponent = 0i64;
    let mut matrix_exponent = 0i64;
    let mut remaining = n;
    while remaining > 0 {
        if remaining % 2 == 1 {
            power = multiply(&power, &matrix, size);
            exponent += matrix_exponent;
        }
        matrix = multiply(&matrix, &matrix, size);
        matrix_exponent *= 2;
        if matrix[(k - 1) * size + (k - 1)].abs() > scale {
            matrix.iter_mut().for_each(|x| *x /= scale);
            matrix_exponent += SCALE_EXPONENT as i64;
        }
        remaining /= 2;
    }
    let mut p = power[(k - 1) * size + (k - 1)];
    let nf = n as f64;
    for i in 1..=n {
        p = i as f64 * p / nf;
        if p.abs() < 1.0 / scale {
            p *= scale;
            exponent -= SCALE_EXPONENT as i64;
        }
    }
    clip(p * 2f64.powi(exponent.clamp(-2000, 2000) as i32))
}

/// `P(D_n <= x)` by the Pelz–Good (1976) expansion in `1/√n` with the Jacobi-theta forms of
/// its terms, accurate where `n` is large and `n·x²` moderate.
fn pelz_good_cdf(n: u64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let nf = n as f64;
    let z = nf.sqrt() * x;
    let (z2, z3, z4, z6) = (z * z, z * z * z, z.powi(4), z.powi(6));
    let pi2 = PI * PI;
    let pi4 = pi2 * pi2;
    let pi6 = pi4 * pi2;
    let q_ln = -pi2 / 8.0 / z2;
    if q_ln < -708.0 {
        return 0.0;
    }
    let q = q_ln.exp();

    let k1a = -z2;
    let k1b = pi2 / 4.0;
    let k2a = 6.0 * z6 + 2.0 * z4;
    let k2b = (2.0 * z4 - 5.0 * z2) * pi2 / 4.0;
    let k2c = pi4 * (1.0 - 2.0 * z2) / 16.0;
    let k3d = pi6 * (5.0 - 30.0 * z2) / 64.0;
    let k3c = pi4 * (-60.0 * z2 + 212.0 * z4) / 16.0;
    let k3b = pi2 * (135.0 * z4 - 96.0 * z6) / 4.0;
    let k3a = -30.0 * z6 - 90.0 * z.powi(8);

    // Σ over odd m = 2k − 1 of c(m) q^(m²), by Horner's scheme in q^(8k).
    let mut terms = [0.0f64; 4];
    let max_k = (16.0 * z / PI).ceil() as i64;
    for k in (1..=max_k).rev() {
        let m = (2 * k - 1) as f64;
        let (m2, m4, m6) = (m * m, m.powi(4), m.powi(6));
        let q_power = q.powf(8.0 * k as f64);
        let coefficients = [1.0, k1a + k1b * m2, k2a + k2b * m2 + k2c * m4, k3a + k3b * m2 + k3c * m4 + k3d * m6];
        for (t, c) in terms.iter_mut().zip(coefficients) {
            *t = *t * q_power + c;
        }
    }
    let sqrt_2pi = (2.0 * PI).sqrt();
    let divisors = [z, 6.0 * z4, 72.0 * z.powi(7), 6480.0 * z.powi(10)];
    for (t, divisor) in terms.iter_mut().zip(divisors) {
        *t = *t * q * sqrt_2pi / divisor;
    }

    // The sums over all integers k of the second and third correction terms.
    let q = (-pi2 / 2.0 / z2).exp();
    let sqrt3z = 3f64.sqrt() * z;
    let mut k2_extra = 0.0;
    let mut k3_extra = 0.0;
    for k in (1..=max_k).rev() {
        let kf = k as f64;
        let k2 = kf * kf;
        let q_power = q.powf(k2);
        let k_pi = PI * kf;
        k2_extra += k2 * q_power;
        k3_extra += (sqrt3z + k_pi) * (sqrt3z - k_pi) * k2 * q_power;
    }
    terms[2] += k2_extra * pi2 * sqrt_2pi / (-36.0 * z3);
    terms[3] += k3_extra * pi2 * sqrt_2pi / (216.0 * z6);
    terms.iter().enumerate().map(|(i, t)| t / nf.powf(i as f64 / 2.0)).sum()
}

fn identity(size: usize) -> Vec<f64> {
    let mut m = vec![0.0; size * size];
    for i in 0..size {
        m[i * size + i] = 1.0;
    }
    m
}

fn multiply(a: &[f64], b: &[f64], size: usize) -> Vec<f64> {
    let mut out = vec![0.0; size * size];
    for i in 0..size {
        for k in 0..size {
            let aik = a[i * size + k];
            if aik == 0.0 {
                continue;
            }
            let row = &b[k * size..(k + 1) * size];
            for (o, bkj) in out[i * size..(i + 1) * size].iter_mut().zip(row) {
                *o += aik * bkj;
            }
        }
    }
    out
}

/// `ln(n! / n^n)`.
fn ln_n_factorial_over_n_pow_n(n: u64) -> f64 {
    let nf = n as f64;
    ln_gamma(nf + 1.0) - nf * nf.ln()
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Rounds halves to even, as NumPy's `round` does.
pub(crate) fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

fn clip(p: f64) -> f64 {
    p.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_distribution_of_tiny_samples_by_enumeration() {
        // m = n = 2: the 6 orderings of {a1, a2} and {b1, b2}; D = 1 for aabb and bbaa only.
        let (d, p) = two_sample_exact(2, 2, 1.0);
        assert_eq!(d, 1.0);
        assert!((p - 2.0 / 6.0).abs() < 1e-15, "{p}");
        // D >= 1/2 always holds (the first step leaves 0 by 1/2).
        let (_, p) = two_sample_exact(2, 2, 0.5);
        assert!((p - 1.0).abs() < 1e-15, "{p}");
        assert_eq!(two_sample_exact(3, 5, 0.0), (0.0, 1.0));
    }

    #[test]
    fn equal_sizes_take_the_reflection_sum_and_agree_with_the_lattice_walk() {
        // The lattice walk of `two_sample_exact` for unequal sizes, run here for equal ones.
        let walk = |n: usize, d: f64| outside_band(n, n, (d * n as f64).round() as i128);
        for n in [1, 2, 3, 7, 50, 333, 1000] {
            for h in 1..=n.min(40) {
                let d = h as f64 / n as f64;
                let (got, want) = (two_sample_exact(n, n, d).1, walk(n, d));
                assert!(
                    (got - want).abs() <= 1e-12 * want.max(1e-300) || (got - want).abs() < 1e-15,
                    "n {n} h {h}: {got} vs {want}"
                );
            }
        }
        // m = n = 2, D = 1: aabb and bbaa of the 6 orderings.
        assert!((two_sample_exact(2, 2, 1.0).1 - 1.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn one_sample_branches_agree_where_they_meet() {
        // The Durbin matrix is exact; Pelz–Good is an expansion: near their border both hold.
        let n = 5_000;
        let x = (1.4f64 / n as f64).powf(2.0 / 3.0) * 1.01;
        let a = durbin_cdf(n, x);
        let b = pelz_good_cdf(n, x);
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        // 2·smirnov approximates the two-sided tail when it is small.
        let x = 0.03;
        let s = 2.0 * smirnov(n, x);
        let c = 1.0 - durbin_cdf(n, x);
        assert!((s - c).abs() / c < 1e-3, "{s} vs {c}");
    }

    #[test]
    fn smirnov_stays_exact_over_millions_of_terms() {
        // P(D+ >= x) for n = 5,000,000: a 30-digit mpmath evaluation of the Birnbaum–Tingey sum
        // (fixtures/generate.py, `smirnov_large`) gives 2·P = 1.98989861639226e-9. SciPy 1.17
        // answers 1.98991576e-9 here, 8.6e-6 away, from its own rounding.
        let p = 2.0 * smirnov(5_000_000, 0.0014396999999999882);
        let expected = 1.989_898_616_392_26e-9;
        assert!(((p - expected) / expected).abs() < 1e-8, "{p:e}");
    }

    #[test]
    fn integral_and_sum_agree_where_both_apply() {
        for (n, x) in [(300_000u64, 0.0035), (1_000_000, 0.0016), (2_000_000, 0.0012), (500_000, 0.004)] {
            let (sum, integral) = (smirnov_sum(n, x), smirnov_integral(n, x));
            // Both carry the rounding of ln Γ near 10^7 (about 1e-9 relative).
            assert!(((sum - integral) / sum).abs() < 1e-8, "n={n} x={x}: {sum:e} vs {integral:e}");
        }
    }

    #[test]
    fn half_even_rounding() {
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(2.4999), 2.0);
        assert_eq!(round_half_even(7.0), 7.0);
    }
}
