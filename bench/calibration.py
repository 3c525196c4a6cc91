"""Statistics half of the calibration report: everything evaluation/stats computes for one judge
with 2,000 labels and 1M scored traces, on synthetic arrays (no database), timed per step.

The full report (issue 10's `make bench-calibration`) adds loading those arrays from PostgreSQL;
this measures the part that is pure computation.

Ends with: RESULT calibration_stats report_ms=... labels=... scored=...
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation import stats

LABELS = int(os.environ.get("BENCH_LABELS", "2000"))
SCORED = int(os.environ.get("BENCH_SCORED", "1000000"))


def synthetic(seed: int = 0) -> dict[str, np.ndarray]:
    """A lenient 1-5 judge: ordinal human labels, judge scores one notch generous on average."""
    rng = np.random.default_rng(seed)
    human_all = rng.choice([1, 2, 3, 4, 5], size=SCORED + LABELS, p=[0.08, 0.12, 0.2, 0.3, 0.3])
    judge_all = np.clip(human_all + rng.choice([-1, 0, 1, 2], size=human_all.size, p=[0.1, 0.45, 0.35, 0.1]), 1, 5)
    return {
        "human": human_all[:LABELS].astype(float),
        "judge": judge_all[:LABELS].astype(float),
        "judge_unlabeled": judge_all[LABELS:].astype(float),
        "inclusion": np.where(judge_all[:LABELS] < 4, 0.02, 0.005),
        "dwell": rng.normal(human_all[:LABELS], 2.0),
    }


def main() -> None:
    data = synthetic()
    human, judge = data["human"], data["judge"]
    good, passed = (human >= 4).astype(int), (judge >= 4).astype(int)
    f_lab, f_unl = (judge - 1) / 4, (data["judge_unlabeled"] - 1) / 4
    steps: dict[str, float] = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        steps[name] = (time.perf_counter() - t0) * 1000
        return out

    start = time.perf_counter()
    binary = timed("binary_agreement", lambda: stats.binary_agreement(good, passed))
    timed("weighted_agreement", lambda: stats.binary_agreement(good, passed, weights=1 / data["inclusion"]))
    timed("ordinal_agreement", lambda: stats.ordinal_agreement(human, judge))
    timed("calibrate", lambda: stats.calibrate(judge, good))
    timed("thresholds", lambda: stats.threshold_guarantee(judge, good, target_precision=0.9))
    est = timed(
        "ppi++",
        lambda: stats.estimate_success(design="uniform", labels=good, scores_labeled=f_lab, scores_unlabeled=f_unl),
    )
    naive = timed("naive", lambda: stats.naive_judge_rate(data["judge_unlabeled"] >= 4))
    timed("verdict", lambda: stats.verdict(binary))
    timed("signal_auc", lambda: stats.signal_auc(good, data["dwell"]))
    timed("cusum", lambda: stats.cusum((good != passed).astype(float), k=0.25, h=5.0))
    timed("psi", lambda: stats.psi(f_unl[: SCORED // 2], f_unl[SCORED // 2 :]))
    total = (time.perf_counter() - start) * 1000

    for name, ms in steps.items():
        print(f"{name:>20}: {ms:8.1f} ms")
    ci = est.interval
    print(f"naive judge rate {naive.value:.3f} vs estimate {ci.value:.3f} [{ci.low:.3f}, {ci.high:.3f}]")
    print(f"method {est.method}, lambda {est.lam:.3f}, each label worth {est.label_multiplier:.2f}")
    print(f"RESULT calibration_stats report_ms={total:.0f} labels={LABELS} scored={SCORED}")


if __name__ == "__main__":
    main()
