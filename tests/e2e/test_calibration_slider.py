"""Real Chromium: the calibration page's threshold slider, moved across every target, shows the pass and fail
thresholds and how many traces go to a person, as the server computed them (the script runs, and its three
figures never contradict each other)."""

from __future__ import annotations

import json
from typing import Any

from evaluation.models import CalibrationTarget
from tests.evaluation.helpers import sweep_until
from tests.evaluation.portal.test_calibration_page import _lenient_world
from tests.fixtures.browser import log_in
from tests.fixtures.organizations import in_tenant


def test_the_threshold_slider_shows_each_target(committed_db: None, live: Any, context: Any, org_a: Any) -> None:
    world, _, _ = _lenient_world(live.api(org_a.secret_key), seed=11)
    with in_tenant(org_a):
        targets = CalibrationTarget.objects.filter(judge_version__judge__name=world.judge, rubric__name=world.rubric)
        sweep_until(lambda: targets.filter(snapshots__isnull=False).exists())
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        log_in(page, live.url, org_a.owner.email)
        page.goto(f"{live.url}{org_a.url(f'judges/{world.judge}/calibration/')}")
        rows = json.loads(page.inner_text("#thresholds-data"))
        assert len(rows) >= 2
        for position, row in enumerate(rows):
            page.eval_on_selector(
                "#target-precision", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", position
            )
            assert page.inner_text("#tp-out") == f"{100 * row['target_precision']:.1f}%"
            passing, failing = page.inner_text("#tp-pass"), page.inner_text("#tp-fail")
            assert passing == ("none" if row["pass_at"] is None else f"≥ {row['pass_at']:.3f}")
            assert failing == ("none" if row["fail_at"] is None else f"≤ {row['fail_at']:.3f}")
            assert page.inner_text("#tp-human") == f"{row['to_human']} / {row['n']}"
            if row["pass_all"]:
                assert page.inner_text("#tp-pass-note").startswith("passes every trace")
    finally:
        page.close()
    assert errors == []
