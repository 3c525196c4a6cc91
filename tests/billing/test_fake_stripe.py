"""The demo's fake Stripe keeps its objects across a restart (bin/run-demo passes --state), so a restarted
demo still knows the customer and subscription Candor holds, and new IDs never repeat old ones."""

from __future__ import annotations

from pathlib import Path

from devtools.fake_stripe import FakeStripe


def test_a_restarted_fake_knows_its_customers_and_never_reuses_an_id(tmp_path: Path) -> None:
    path = str(tmp_path / "fake-stripe.json")
    first = FakeStripe(url="http://fake", state_path=path)
    status, customer = first.handle("POST", "/v1/customers", {"name": "Acme", "email": "o@acme.test"}, None)
    assert status == 200
    first.save()
    again = FakeStripe(url="http://fake", state_path=path)
    again.load()
    assert again.customers == {customer["id"]: customer}
    params = {"customer": customer["id"], "mode": "subscription", "line_items[0][price]": "price_x"}
    status, session = again.handle("POST", "/v1/checkout/sessions", params, None)
    assert status == 200
    assert int(session["id"].removeprefix("cs_fake")) > int(customer["id"].removeprefix("cus_fake"))
    empty = FakeStripe(state_path=str(tmp_path / "missing.json"))
    empty.load()  # no file yet: an empty fake
    assert empty.customers == {} and empty.subscriptions == {}


def test_paying_twice_for_one_checkout_makes_one_subscription() -> None:
    fake = FakeStripe(url="http://fake")
    _, customer = fake.handle("POST", "/v1/customers", {"name": "Acme"}, None)
    _, session = fake.handle("POST", "/v1/checkout/sessions", {"customer": customer["id"], "mode": "subscription",
                             "success_url": "http://candor/billing/?checkout=done",
                             "line_items[0][price]": "price_x"}, None)  # fmt: skip
    path = "/checkout/" + session["id"]
    first, second = (fake.page("POST", path, {"action": "pay"}) for _ in range(2))  # a double click
    assert first.location == second.location == "http://candor/billing/?checkout=done"
    [subscription] = fake.subscriptions.values()
    assert subscription["customer"] == customer["id"] and subscription["status"] == "active"
    assert fake.page("GET", "/checkout/cs_nope", {}).status == 404
