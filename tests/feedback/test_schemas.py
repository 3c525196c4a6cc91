"""Body validation: an item the strict decoder refuses is that item's error, a body nested too deep a 400."""

from __future__ import annotations

from tests.fixtures.api import post_json
from tests.fixtures.organizations import unique


def test_bad_keys_and_deep_nesting_are_item_errors(client_a) -> None:  # type: ignore[no-untyped-def]
    good = unique()
    deep = "[" * 5000 + "]" * 5000
    body = (
        f'{{"batch": [{{"trace_id": "{good}", "feature": "f"}},'
        ' {"trace_id": "x1", "feature": "f", "metadata": {"\\ud800": "v"}}]}'
    ).encode()
    response = post_json(client_a, "/api/v1/traces", body)
    assert response.status_code == 207, response.content
    assert response.json()["errors"][0]["index"] == 1 and response.json()["accepted"] == 1
    nested = post_json(
        client_a, "/api/v1/traces", f'{{"trace_id": "x", "feature": "f", "metadata": {{"a": {deep}}}}}'.encode()
    )
    assert nested.status_code == 400 and nested.json()["error"]["code"] in {"too_deep", "invalid"}
