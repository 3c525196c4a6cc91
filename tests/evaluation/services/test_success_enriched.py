"""A judge that samples 20% of traces plus every thumbs-down scores an enriched sample: PPI++ over
its scores would describe that sample, not every trace, so the success estimate falls back to the
uniform labels alone and says why; with a uniform judge sample the same labels give PPI++."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from evaluation.reports.selectors import window_from
from evaluation.selectors import TraceScope, rubric_get
from evaluation.services.calibration import ENRICHED_NOTE, success_estimate
from evaluation.services.judges import judge_enable
from evaluation.services.labels import labels_ingest
from evaluation.services.runs import scores_run
from evaluation.services.sampling import sampling_sweep
from evaluation.services.shared import utc_now
from feedback.models import Feature
from tests.evaluation.helpers import make_traces, offline_judge, thumbs_down
from tests.fixtures.organizations import in_tenant, unique


@pytest.mark.parametrize("enriched", [True, False])
def test_an_enriched_judge_sample_falls_back_to_the_labels(db: None, org_a, enriched: bool) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        feature = unique("feat")
        ids = make_traces(300, feature=feature)
        if enriched:
            thumbs_down(ids[:40])
        judge = offline_judge()
        judge_enable(judge=judge, base_rate=0.2 if enriched else 1.0, all_thumbs_down=enriched)
        sampling_sweep(now=utc_now() + timedelta(minutes=1))
        scores_run(max_seconds=60)
        rubric = unique("rb")
        items = [{"label_id": unique("lb"), "trace_id": t, "rubric": rubric, "value": int(i % 3 != 0),
                  "sampling": {"design": "uniform", "inclusion_probability": 0.2}}
                 for i, t in enumerate(ids[::4])]  # fmt: skip
        result = labels_ingest(body=json.dumps({"batch": items}).encode())
        assert not result.errors, result.errors
        window = window_from("2025-03-20", "2025-04-10")
        f = Feature.objects.get(key=feature)
        report = success_estimate(
            feature=feature, rubric=rubric_get(rubric), judge=judge, judge_version=judge.current_version,  # type: ignore[arg-type]
            scope=TraceScope(feature_id=f.id, since=window.since, until=window.until), window=window,
        )  # fmt: skip
    estimate = report["estimate"]
    if enriched:
        assert estimate["method"] == "classical" and estimate["note"] == ENRICHED_NOTE
        assert estimate["value"] == pytest.approx(report["human"]["value"])
        assert "enriched sample" in report["judge_uncorrected"]["note"]
    else:
        assert estimate["method"] == "ppi++" and "enriched" not in report["judge_uncorrected"]["note"]
