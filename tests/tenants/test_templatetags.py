"""The portal's own template filters."""

from __future__ import annotations

from django.template import Context, Template


def test_words_shows_an_identifier_as_words() -> None:
    rendered = Template("{% load candor %}{{ verdict|words|upper }} · {{ meter|words }}").render(
        Context({"verdict": "keep_running", "meter": "judge_runs"})
    )
    assert rendered == "KEEP RUNNING · judge runs"
    assert Template("{% load candor %}[{{ missing|words }}]").render(Context({"missing": None})) == "[]"
