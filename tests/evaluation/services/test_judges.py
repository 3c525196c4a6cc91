"""Judge versions: editing back to an earlier version takes today's sampling rule and scan mark."""

from __future__ import annotations

import dataclasses

from evaluation.judges.templates import builtin_template
from evaluation.models import SamplingRule
from evaluation.services.judges import judge_enable, judge_version_create
from tests.evaluation.helpers import offline_judge
from tests.fixtures.organizations import in_tenant


def test_reverting_to_an_earlier_version_keeps_todays_rule_and_scan_mark(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    with in_tenant(org_a):
        judge = offline_judge()
        judge_enable(judge=judge, base_rate=0.1)
        first = judge.current_version
        first_spec = builtin_template("helpfulness").spec()
        stricter = dataclasses.replace(first_spec, prompt_template=first_spec.prompt_template + "\nBe strict.")
        second, created = judge_version_create(judge=judge, spec=stricter)
        assert created and second.pk != first.pk  # type: ignore[union-attr]
        SamplingRule.objects.filter(judge_version=second).update(base_rate=0.5, scanned_through=987_654)
        back, created = judge_version_create(judge=judge, spec=first_spec)
        assert not created and back.pk == first.pk  # type: ignore[union-attr]
        rule = SamplingRule.objects.get(judge_version=back)
        assert (rule.base_rate, rule.scanned_through) == (0.5, 987_654)
