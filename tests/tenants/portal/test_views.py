"""Portal: login, sign-up, members and invitations, API keys, widget security, and other
organizations' objects by id (404)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tenants.models import ApiKey, Invitation, Membership, Role, User
from tenants.services import api_key_resolve
from tests.fixtures.organizations import PASSWORD
from tests.helpers import assert_cross_tenant_404


def test_login_with_email_and_password(db: None, org_a) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    bad = client.post("/login/", {"username": org_a.owner.email, "password": "wrong"})
    assert bad.status_code == 200 and b"correct email" in bad.content.lower().replace(b"username", b"email")
    good = client.post("/login/", {"username": org_a.owner.email.upper(), "password": PASSWORD})
    assert good.status_code == 302
    home = client.get("/", follow=True)
    assert home.redirect_chain[-1][0] == f"/o/{org_a.slug}/"
    assert b"Org-Alpha" in home.content


def test_the_settings_address_leads_to_the_members_page(owner_a, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    response = owner_a.get(org_a.url("settings/"), follow=True)
    assert response.redirect_chain == [(org_a.url("settings/members/"), 302)]
    assert response.status_code == 200 and org_a.owner.email.encode() in response.content
    # Another organization's settings are a 404, not a redirect into them.
    assert_cross_tenant_404(owner_a, org_b.url("settings/"))


def test_another_orgs_objects_by_id_are_404(owner_a, org_a, org_b) -> None:  # type: ignore[no-untyped-def]
    beta_key = ApiKey.objects.filter(organization=org_b.organization).first()
    beta_member = Membership.objects.get(organization=org_b.organization, user=org_b.owner)
    assert_cross_tenant_404(owner_a, org_a.url(f"settings/keys/{beta_key.id}/revoke/"), "post")
    assert_cross_tenant_404(owner_a, org_a.url(f"settings/keys/{beta_key.id}/origins/"))
    assert_cross_tenant_404(
        owner_a, org_a.url(f"settings/members/{beta_member.id}/role/"), "post", data={"role": "viewer"}
    )
    assert_cross_tenant_404(owner_a, org_a.url(f"settings/members/{beta_member.id}/remove/"), "post")
    beta_key.refresh_from_db()
    assert beta_key.revoked_at is None
    assert Membership.objects.filter(id=beta_member.id, role=Role.OWNER).exists()


def test_signup_creates_org_and_shows_keys_once(scratch_org_cleanup) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    form = {"email": "new@scratch.test", "password": "a-long-enough-pass", "organization_name": "Scratch Co",
            "organization_slug": "scratch-signup"}  # fmt: skip
    response = client.post("/signup/", form, follow=True)
    assert response.redirect_chain[-1][0] == "/o/scratch-signup/settings/keys/"
    keys = re.findall(rb"(sk_[\w-]{40,}|pk_[\w-]{40,})", response.content)
    assert len(set(keys)) == 2
    raw = keys[0].decode()
    assert api_key_resolve(raw) is not None
    again = client.get("/o/scratch-signup/settings/keys/")
    assert raw.encode() not in again.content  # shown once


@pytest.mark.parametrize(
    "change, message",
    [
        ({"password": "password"}, b"too common"),
        ({"organization_slug": "Bad Slug"}, b"lowercase"),
        ({"organization_slug": "org-alpha"}, b"already exists"),
        ({"organization_slug": "admin"}, b"reserved"),
    ],
)
def test_signup_errors_are_form_errors(db: None, org_a, change, message) -> None:  # type: ignore[no-untyped-def]
    form = {"email": "x@y.test", "password": "a-long-enough-pass", "organization_name": "X",
            "organization_slug": "fresh-slug", **change}  # fmt: skip
    response = Client().post("/signup/", form)
    assert response.status_code == 200 and message in response.content
    assert not User.objects.filter(email="x@y.test").exists()


def test_invite_accept_change_role_and_remove(owner_a, org_a) -> None:  # type: ignore[no-untyped-def]
    response = owner_a.post(org_a.url("settings/members/"), {"email": "pm@alpha.test", "role": "pm"})
    link = re.search(rb"https?://[^<\s]+/invite/[\w-]+/", response.content).group(0).decode()
    again = owner_a.post(org_a.url("settings/members/"), {"email": org_a.owner.email, "role": "pm"})
    assert b"already a member" in again.content
    newcomer = Client()
    path = link.split("testserver", 1)[1]
    assert b"Join Org-Alpha" in newcomer.get(path).content
    newcomer.post(path, {"password": "a-long-enough-pass"})
    membership = Membership.objects.get(organization=org_a.organization, user__email="pm@alpha.test")
    assert membership.role == Role.PM
    assert newcomer.get(path).status_code == 404  # used once
    # a PM cannot manage members or see keys
    assert newcomer.post(org_a.url(f"settings/members/{membership.id}/role/"), {"role": "owner"}).status_code == 403
    assert newcomer.get(org_a.url("settings/keys/")).status_code == 403
    owner_a.post(org_a.url(f"settings/members/{membership.id}/role/"), {"role": "viewer"})
    membership.refresh_from_db()
    assert membership.role == Role.VIEWER
    owner_a.post(org_a.url(f"settings/members/{membership.id}/remove/"))
    assert not Membership.objects.filter(id=membership.id).exists()
    assert newcomer.get(org_a.url("")).status_code == 404


def test_last_owner_cannot_leave(owner_a, org_a) -> None:  # type: ignore[no-untyped-def]
    own = Membership.objects.get(organization=org_a.organization, user=org_a.owner)
    response = owner_a.post(org_a.url(f"settings/members/{own.id}/role/"), {"role": "viewer"}, follow=True)
    assert b"at least one owner" in response.content
    own.refresh_from_db()
    assert own.role == Role.OWNER


def test_expired_invitation_is_refused(owner_a, org_a) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from django.utils import timezone

    response = owner_a.post(org_a.url("settings/members/"), {"email": "late@alpha.test", "role": "viewer"})
    path = re.search(rb"/invite/[\w-]+/", response.content).group(0).decode()
    Invitation.objects.filter(email="late@alpha.test").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert Client().get(path).status_code == 404


def test_create_edit_and_revoke_keys(owner_a, org_a) -> None:  # type: ignore[no-untyped-def]
    origins = "https://Shop.example.com/\nhttp://localhost:3000"
    form = {"name": "Storefront", "kind": "public", "allowed_origins": origins}
    response = owner_a.post(org_a.url("settings/keys/"), form)
    raw = re.search(rb"pk_[\w-]{40,}", response.content).group(0).decode()
    key = ApiKey.objects.get(organization=org_a.organization, name="Storefront")
    assert key.allowed_origins == ["http://localhost:3000", "https://shop.example.com"]
    assert f'data-key="{raw}"'.encode() in response.content  # the snippet carries the new public key
    bad = owner_a.post(org_a.url(f"settings/keys/{key.id}/origins/"), {"allowed_origins": "not a url"})
    assert b"is not an origin" in bad.content
    owner_a.post(org_a.url(f"settings/keys/{key.id}/origins/"), {"allowed_origins": "https://app.example.com"})
    key.refresh_from_db()
    assert key.allowed_origins == ["https://app.example.com"]
    assert api_key_resolve(raw) is not None
    owner_a.post(org_a.url(f"settings/keys/{key.id}/revoke/"))
    assert api_key_resolve(raw) is None
    listing = owner_a.get(org_a.url("settings/keys/"))
    assert b"revoked" in listing.content and raw.encode() not in listing.content


def test_widget_security_toggle_and_rotate(owner_a, org_a) -> None:  # type: ignore[no-untyped-def]
    from tenants.models import Organization
    from tenants.tokens import sign_trace_token, verify_trace_token

    owner_a.post(org_a.url("settings/widget/"), {"require_signed_tokens": "on"})
    org = Organization.objects.get(id=org_a.organization.id)
    assert org.require_signed_tokens and org.widget_signing_secret.startswith("whsec_")
    page = owner_a.get(org_a.url("settings/widget/"))
    assert org.widget_signing_secret.encode() in page.content
    token = sign_trace_token(org.widget_signing_secret, "tr_1", "u1")
    assert verify_trace_token(org.widget_signing_secret, token, "tr_1", "u1") is None
    assert verify_trace_token(org.widget_signing_secret, token, "tr_2", "u1") == "bad_signature"
    owner_a.post(org_a.url("settings/widget/"), {"require_signed_tokens": "on", "rotate": "1"})
    rotated = Organization.objects.get(id=org_a.organization.id).widget_signing_secret
    assert rotated != org.widget_signing_secret
    assert verify_trace_token(rotated, token, "tr_1", "u1") == "bad_signature"
    owner_a.post(org_a.url("settings/widget/"), {})
    assert not Organization.objects.get(id=org_a.organization.id).require_signed_tokens


def test_a_secret_key_with_origins_is_refused_on_the_field(owner_a, org_a) -> None:  # type: ignore[no-untyped-def]
    form = {"name": "Backend-with-origins", "kind": "secret", "allowed_origins": "https://app.example.com"}
    response = owner_a.post(org_a.url("settings/keys/"), form)
    assert response.status_code == 200 and response.context["new_key"] is None
    errors = response.context["form"].errors
    assert "public (browser) keys only" in " ".join(errors["allowed_origins"])
    assert not ApiKey.objects.filter(organization=org_a.organization, name="Backend-with-origins").exists()
    # Without origins the same secret key is created.
    owner_a.post(org_a.url("settings/keys/"), {**form, "allowed_origins": ""})
    assert ApiKey.objects.get(organization=org_a.organization, name="Backend-with-origins").allowed_origins == []


def test_a_bad_origin_is_quoted_whole(owner_a, org_a) -> None:  # type: ignore[no-untyped-def]
    owner_a.post(org_a.url("settings/keys/"), {"name": "Shop", "kind": "public", "allowed_origins": ""})
    key = ApiKey.objects.get(organization=org_a.organization, name="Shop")
    bad = owner_a.post(org_a.url(f"settings/keys/{key.id}/origins/"), {"allowed_origins": "not a url"})
    message = " ".join(bad.context["form"].errors["allowed_origins"])
    assert message.startswith("'not a url' is not an origin") and "'not'" not in message
    mixed = {"name": "Shop-2", "kind": "public", "allowed_origins": "https://a.example.com, not a url"}
    created = owner_a.post(org_a.url("settings/keys/"), mixed)
    assert "'not a url' is not an origin" in " ".join(created.context["form"].errors["allowed_origins"])
    # Commas and newlines both separate entries.
    several = "https://a.example.com, https://b.example.com\nhttps://c.example.com"
    owner_a.post(org_a.url(f"settings/keys/{key.id}/origins/"), {"allowed_origins": several})
    key.refresh_from_db()
    assert key.allowed_origins == ["https://a.example.com", "https://b.example.com", "https://c.example.com"]


def test_a_revoked_public_key_has_no_origins_to_edit(owner_a, org_a) -> None:  # type: ignore[no-untyped-def]
    owner_a.post(org_a.url("settings/keys/"), {"name": "Old-shop", "kind": "public",
                                               "allowed_origins": "https://old.example.com"})  # fmt: skip
    key = ApiKey.objects.get(organization=org_a.organization, name="Old-shop")
    edit = org_a.url(f"settings/keys/{key.id}/origins/").encode()
    assert edit in owner_a.get(org_a.url("settings/keys/")).content
    owner_a.post(org_a.url(f"settings/keys/{key.id}/revoke/"))
    assert edit not in owner_a.get(org_a.url("settings/keys/")).content
    assert owner_a.get(edit.decode()).status_code == 404
    owner_a.post(edit.decode(), {"allowed_origins": "https://new.example.com"})
    key.refresh_from_db()
    assert key.allowed_origins == ["https://old.example.com"]
