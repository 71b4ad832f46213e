//! Calibration of a binary classifier's scores: isotonic regression of the labels on the
//! scores, and the expected calibration error that decides whether calibrating helps.
//!
//! [`Isotonic`] is scikit-learn's `IsotonicRegression(out_of_bounds='clip', increasing=True)`
//! with unit weights: rows ordered by score (then label), equal scores merged into their mean
//! label weighted by their count, pool-adjacent-violators over those means (a block is pooled
//! into its left neighbour while the neighbour's mean is at least its own), and only the points
//! where the fitted step changes kept as knots. A score is clipped to the fitted range and
//! interpolated linearly between knots, as `numpy.interp` does.

/// A fitted isotonic calibration: knots `(score, calibrated)`, scores strictly increasing.
#[derive(Debug, Clone, PartialEq)]
pub struct Isotonic {
    scores: Vec<f64>,
    calibrated: Vec<f64>,
}

/// Scores closer than this are one value (scikit-learn: `np.finfo(float64).resolution`).
const SAME_SCORE: f64 = 1e-15;

impl Isotonic {
    /// Fits the calibration of `scores` (finite) against `labels`; `None` without rows.
    pub fn fit(scores: &[f64], labels: &[bool]) -> Option<Isotonic> {
        assert_eq!(scores.len(), labels.len(), "one label per score");
        if scores.is_empty() {
            return None;
        }
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(labels[a].cmp(&labels[b])));

        // Distinct scores with the mean label and row count of each.
        let mut points: Vec<(f64, f64, f64)> = Vec::new();
        let (mut x, mut positives, mut rows) = (scores[order[0]], 0.0, 0.0);
        for &i in &order {
            if scores[i] - x >= SAME_SCORE {
                points.push((x, positives / rows, rows));
                (x, positives, rows) = (scores[i], 0.0, 0.0);
            }
            positives += f64::from(u8::from(labels[i]));
            rows += 1.0;
        }
        points.push((x, positives / rows, rows));

        // Pool adjacent violators: blocks of (weighted sum, weight, points).
        let mut blocks: Vec<(f64, f64, usize)> = Vec::with_capacity(points.len());
        for &(_, mean, weight) in &points {
            let mut block = (mean * weight, weight, 1usize);
            while let Some(&(sum, w, len)) = blocks.last() {
                if sum / w < block.0 / block.1 {
                    break;
                }
                blocks.pop();
                block = (sum + block.0, w + block.1, len + block.2);
            }
            blocks.push(block);
        }
        let fitted: Vec<f64> =
            blocks.iter().flat_map(|&(sum, weight, len)| std::iter::repeat_n(sum / weight, len)).collect();

        // Knots: the ends, and every point whose value differs from a neighbour's.
        let last = points.len() - 1;
        let (mut knots, mut values) = (Vec::new(), Vec::new());
        for i in 0..points.len() {
            if i == 0 || i == last || fitted[i] != fitted[i - 1] || fitted[i] != fitted[i + 1] {
                knots.push(points[i].0);
                values.push(fitted[i]);
            }
        }
        Some(Isotonic { scores: knots, calibrated: values })
    }

    /// The calibrated probability of `score`.
    pub fn calibrate(&self, score: f64) -> f64 {
        let (xs, ys) = (&self.scores, &self.calibrated);
        let last = xs.len() - 1;
        if score.is_nan() {
            return f64::NAN;
        }
        if score <= xs[0] {
            return ys[0];
        }
        if score >= xs[last] {
            return ys[last];
        }
        // The knot at or left of the score.
        let j = xs.partition_point(|x| *x <= score) - 1;
        if xs[j] == score {
            return ys[j];
        }
        let slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j]);
        slope * (score - xs[j]) + ys[j]
    }

    /// The knots, as `(score, calibrated)`.
    pub fn knots(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.scores.iter().copied().zip(self.calibrated.iter().copied())
    }
}

/// Expected calibration error over ten bins of equal row count: rows ordered by score (ties in
/// row order), cut at every tenth of the rows (the last bin takes the remainder), and
/// `Σ (rows in bin / rows) · |mean score − share of positives|`. `None` below ten rows.
pub fn expected_calibration_error(scores: &[f64], labels: &[bool]) -> Option<f64> {
    const BINS: usize = 10;
    let n = scores.len();
    if n < BINS {
        return None;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let width = n / BINS;
    let mut error = 0.0;
    for b in 0..BINS {
        let end = if b == BINS - 1 { n } else { (b + 1) * width };
        let bin = &order[b * width..end];
        let len = bin.len() as f64;
        let mean_score = bin.iter().map(|&i| scores[i]).sum::<f64>() / len;
        let positives = bin.iter().filter(|&&i| labels[i]).count() as f64 / len;
        error += len / n as f64 * (mean_score - positives).abs();
    }
    Some(error)
}

/// Whether isotonic calibration makes `scores` better calibrated, judged out of sample as
/// NannyML judges it: not when one class is missing or the scores rank almost perfectly (ROC AUC
/// above 0.999); otherwise each of ten stratified folds (the k-th row of each class, in row
/// order, goes to fold k mod 10) is calibrated by a fit on the other nine, and calibration is
/// used when the folds' expected calibration error is lower after than before.
pub fn calibration_helps(scores: &[f64], labels: &[bool], roc_auc: Option<f64>) -> CalibrationCheck {
    const FOLDS: usize = 10;
    let positives = labels.iter().filter(|l| **l).count();
    if positives == 0 || positives == labels.len() {
        return CalibrationCheck {
            helps: false,
            reason: "the labels hold one class".into(),
            before: None,
            after: None,
        };
    }
    if roc_auc.is_some_and(|a| a > 0.999) {
        return CalibrationCheck {
            helps: false,
            reason: "the scores rank the labels almost perfectly (ROC AUC above 0.999)".into(),
            before: None,
            after: None,
        };
    }
    let mut fold = vec![0usize; labels.len()];
    let mut seen = [0usize; 2];
    for (i, l) in labels.iter().enumerate() {
        let class = usize::from(*l);
        fold[i] = seen[class] % FOLDS;
        seen[class] += 1;
    }
    let (mut raw, mut calibrated, mut truth) = (Vec::new(), Vec::new(), Vec::new());
    for f in 0..FOLDS {
        let (train_scores, train_labels): (Vec<f64>, Vec<bool>) =
            (0..labels.len()).filter(|&i| fold[i] != f).map(|i| (scores[i], labels[i])).unzip();
        let Some(fit) = Isotonic::fit(&train_scores, &train_labels) else { continue };
        for i in (0..labels.len()).filter(|&i| fold[i] == f) {
            raw.push(scores[i]);
            calibrated.push(fit.calibrate(scores[i]));
            truth.push(labels[i]);
        }
    }
    let (before, after) = (expected_calibration_error(&raw, &truth), expected_calibration_error(&calibrated, &truth));
    match (before, after) {
        (Some(b), Some(a)) if b > a => CalibrationCheck {
            helps: true,
            reason: "calibrating lowers the expected calibration error out of sample".into(),
            before,
            after,
        },
        (Some(_), Some(_)) => CalibrationCheck {
            helps: false,
            reason: "the scores are calibrated already: calibrating does not lower the expected calibration error"
                .into(),
            before,
            after,
        },
        _ => CalibrationCheck {
            helps: false,
            reason: "fewer than ten rows to judge calibration by".into(),
            before,
            after,
        },
    }
}

/// The outcome of [`calibration_helps`].
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationCheck {
    pub helps: bool,
    /// Why, in words.
    pub reason: String,
    /// Expected calibration error out of sample, before and after calibrating.
    pub before: Option<f64>,
    pub after: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotonic_pools_violators_and_interpolates_between_knots() {
        // Scores 1..5 with labels that decrease between 2 and 3: those two pool to 0.5.
        let scores = [1.0, 2.0, 3.0, 4.0, 5.0];
        let labels = [false, true, false, true, true];
        let fit = Isotonic::fit(&scores, &labels).unwrap();
        let knots: Vec<(f64, f64)> = fit.knots().collect();
        assert_eq!(knots, vec![(1.0, 0.0), (2.0, 0.5), (3.0, 0.5), (4.0, 1.0), (5.0, 1.0)]);
        assert_eq!(fit.calibrate(2.5), 0.5);
        assert_eq!(fit.calibrate(1.5), 0.25);
        assert_eq!(fit.calibrate(0.0), 0.0, "below the range: the first knot");
        assert_eq!(fit.calibrate(9.0), 1.0, "above the range: the last knot");
    }

    #[test]
    fn equal_scores_are_one_point_weighted_by_their_rows() {
        // Three rows at 0.5 (one positive) and one at 0.9 (negative) pool to 1/4 overall.
        let fit = Isotonic::fit(&[0.5, 0.5, 0.9, 0.5], &[true, false, false, false]).unwrap();
        let knots: Vec<(f64, f64)> = fit.knots().collect();
        assert_eq!(knots, vec![(0.5, 0.25), (0.9, 0.25)]);
    }

    #[test]
    fn calibration_error_is_the_weighted_gap_per_bin() {
        // Ten rows, one per bin: the error is the mean of |score − label|.
        let scores: Vec<f64> = (0..10).map(|i| f64::from(i) / 10.0).collect();
        let labels: Vec<bool> = (0..10).map(|i| i >= 5).collect();
        let want = scores.iter().zip(&labels).map(|(s, l)| (s - f64::from(u8::from(*l))).abs()).sum::<f64>() / 10.0;
        assert!((expected_calibration_error(&scores, &labels).unwrap() - want).abs() < 1e-15);
        assert_eq!(expected_calibration_error(&scores[..9], &labels[..9]), None);
    }

    #[test]
    fn calibration_is_judged_out_of_sample() {
        // Scores that are all 0.9 while a third of the rows are positive: badly calibrated.
        let labels: Vec<bool> = (0..300).map(|i| i % 3 == 0).collect();
        let scores: Vec<f64> = (0..300).map(|i| if i % 3 == 0 { 0.95 } else { 0.9 }).collect();
        let check = calibration_helps(&scores, &labels, Some(0.9));
        assert!(check.helps, "{check:?}");
        assert!(check.before.unwrap() > check.after.unwrap());
        let one_class = calibration_helps(&scores, &[true; 300], None);
        assert!(!one_class.helps && one_class.reason.contains("one class"));
        let perfect = calibration_helps(&scores, &labels, Some(1.0));
        assert!(!perfect.helps && perfect.reason.contains("0.999"));
    }
}
