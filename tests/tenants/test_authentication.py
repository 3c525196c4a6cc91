"""The secret-key door of the API: no key, an unknown key and a public key each get their own answer."""

from __future__ import annotations

from tests.fixtures.api import trace
from tests.fixtures.organizations import unique
from tests.helpers import error_code


def test_keys_and_errors(live, api_a, org_a) -> None:  # type: ignore[no-untyped-def]
    anonymous = live.api(None).post("/api/v1/traces", trace(unique()))
    assert anonymous.status_code == 401 and error_code(anonymous) == "not_authenticated"
    unknown = live.api("sk_" + "x" * 43).post("/api/v1/traces", trace(unique()))
    assert unknown.status_code == 401 and error_code(unknown) == "invalid_key"
    public = live.api(org_a.public_key).post("/api/v1/traces", trace(unique()))
    assert public.status_code == 403 and error_code(public) == "public_key_not_allowed"
    assert live.api(org_a.public_key).get("/api/v1/traces").status_code == 403
