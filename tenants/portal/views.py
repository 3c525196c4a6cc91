"""Public pages (login, sign-up, organization switcher) and organization settings."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from tenants import services
from tenants.access import org_url, portal_url, role_required
from tenants.models import ApiKey, KeyKind, Membership, Role
from tenants.portal.forms import ApiKeyForm, EmailAuthenticationForm, InviteForm, OriginsForm, RoleForm, SignupForm


def _add_form_errors(form: Any, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


class LoginView(auth_views.LoginView):
    form_class = EmailAuthenticationForm
    template_name = "tenants/login.html"
    redirect_authenticated_user = True


def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("tenants:login")


def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("tenants:login")
    organizations = list(request.user.organizations())  # type: ignore[union-attr]
    last = request.session.get("last_org")
    chosen = next((o for o in organizations if o.slug == last), organizations[0] if organizations else None)
    if chosen is None:
        return redirect("tenants:organization-list")
    return redirect(portal_url(chosen.slug))


def signup(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            created = services.user_signup(**form.cleaned_data)
        except ValidationError as exc:
            _add_form_errors(form, exc)
        else:
            login(request, created.owner, backend="django.contrib.auth.backends.ModelBackend")
            request.session["new_keys"] = {"secret": created.secret_key, "public": created.public_key}
            return redirect("tenants_settings:keys", created.organization.slug)
    return TemplateResponse(request, "tenants/signup.html", {"form": form})


@login_required
def organization_list(request: HttpRequest) -> HttpResponse:
    return TemplateResponse(request, "tenants/organization_list.html", {})


def invitation_accept_view(request: HttpRequest, token: str) -> HttpResponse:
    invitation = services.invitation_find(token)
    if invitation is None:
        return TemplateResponse(request, "tenants/invitation_invalid.html", {}, status=404)
    form = SignupForm(request.POST or None, initial={"email": invitation.email})
    if request.user.is_authenticated:
        if request.method == "POST":
            try:
                services.invitation_accept(invitation=invitation, user=request.user)  # type: ignore[arg-type]
            except ValidationError as exc:
                messages.error(request, " ".join(exc.messages))
            else:
                return redirect(portal_url(invitation.organization.slug))
        return TemplateResponse(request, "tenants/invitation.html", {"invitation": invitation})
    # A newcomer sets a password; the email is the invitation's.
    if request.method == "POST":
        from django.contrib.auth.password_validation import validate_password

        from tenants.models import User

        password = request.POST.get("password", "")
        try:
            if User.objects.filter(email=invitation.email).exists():
                raise ValidationError("An account with this email exists: log in first, then open the link again.")
            validate_password(password, User(username=invitation.email, email=invitation.email))
            user = User.objects.create_user(username=invitation.email, email=invitation.email, password=password)
            services.invitation_accept(invitation=invitation, user=user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect(portal_url(invitation.organization.slug))
    return TemplateResponse(request, "tenants/invitation.html", {"invitation": invitation, "form": form})


# --- Organization settings -------------------------------------------------------------


def _members_context(request: HttpRequest, invite_form: InviteForm, invite_link: str | None = None) -> dict[str, Any]:
    organization = request.tenant  # type: ignore[attr-defined]
    return {
        "members": Membership.objects.filter(organization=organization).select_related("user").order_by("user__email"),
        "invitations": organization.invitations.filter(accepted_at__isnull=True).order_by("-created_at"),
        "invite_form": invite_form,
        "invite_link": invite_link,
        "roles": Role.choices,
        "can_manage": request.membership.at_least(Role.ADMIN),  # type: ignore[attr-defined]
    }


def settings_home(request: HttpRequest) -> HttpResponse:
    return redirect(org_url(request, "tenants_settings:members"))


def members(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST or None)
    invite_link = None
    if request.method == "POST":
        if not request.membership.at_least(Role.ADMIN):  # type: ignore[attr-defined]
            raise PermissionDenied("Only admins and owners can invite.")
        if form.is_valid():
            try:
                token = services.invitation_create(
                    organization=request.tenant,  # type: ignore[attr-defined]
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                    invited_by=request.user,  # type: ignore[arg-type]
                )
            except ValidationError as exc:
                _add_form_errors(form, exc)
            else:
                invite_link = request.build_absolute_uri(reverse("tenants:invitation-accept", args=[token]))
                form = InviteForm()
    template = "tenants/members.html#members" if request.htmx else "tenants/members.html"  # type: ignore[attr-defined]
    return TemplateResponse(request, template, _members_context(request, form, invite_link))


def _membership(request: HttpRequest, membership_id: int) -> Membership:
    # Scoped to the current organization: another organization's membership is a 404.
    return get_object_or_404(Membership, id=membership_id, organization=request.tenant)  # type: ignore[attr-defined]


@require_POST
@role_required(Role.ADMIN)
def member_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    membership = _membership(request, membership_id)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            services.membership_change_role(
                membership=membership,
                role=form.cleaned_data["role"],
                acting=request.membership,  # type: ignore[attr-defined]
            )
            messages.success(request, f"{membership.user.email} is now {membership.get_role_display()}.")
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
    else:
        messages.error(request, "Pick one of the listed roles.")
    return redirect(org_url(request, "tenants_settings:members"))


@require_POST
@role_required(Role.ADMIN)
def member_remove(request: HttpRequest, membership_id: int) -> HttpResponse:
    membership = _membership(request, membership_id)
    try:
        services.membership_remove(membership=membership, acting=request.membership)  # type: ignore[attr-defined]
        messages.success(request, f"Removed {membership.user.email}.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect(org_url(request, "tenants_settings:members"))


def _keys_context(request: HttpRequest, form: ApiKeyForm, new_key: dict[str, str] | None) -> dict[str, Any]:
    organization = request.tenant  # type: ignore[attr-defined]
    public = ApiKey.objects.filter(organization=organization, kind=KeyKind.PUBLIC, revoked_at__isnull=True).first()
    return {
        "keys": ApiKey.objects.filter(organization=organization),
        "form": form,
        "new_key": new_key,
        "new_keys": request.session.pop("new_keys", None),
        "widget_src": request.build_absolute_uri("/static/widget/candor.js"),
        "snippet_key": (new_key or {}).get("raw") if (new_key or {}).get("kind") == "public" else None,
        "has_public_key": public is not None,
    }


@role_required(Role.ADMIN)
def api_keys(request: HttpRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        try:
            raw, key = services.api_key_create(
                organization=request.tenant,  # type: ignore[attr-defined]
                kind=form.cleaned_data["kind"],
                name=form.cleaned_data["name"],
                allowed_origins=form.origins(),
                created_by=request.user,  # type: ignore[arg-type]
            )
        except ValidationError as exc:
            _add_form_errors(form, exc)
        else:
            new_key = {"raw": raw, "name": key.name, "kind": key.kind}
            form = ApiKeyForm()
    return TemplateResponse(request, "tenants/api_keys.html", _keys_context(request, form, new_key))


def _api_key(request: HttpRequest, key_id: int) -> ApiKey:
    return get_object_or_404(ApiKey, id=key_id, organization=request.tenant)  # type: ignore[attr-defined]


@require_POST
@role_required(Role.ADMIN)
def api_key_revoke_view(request: HttpRequest, key_id: int) -> HttpResponse:
    key = _api_key(request, key_id)
    services.api_key_revoke(key=key)
    messages.success(request, f"Revoked '{key.name}'. Requests with it now get 401.")
    return redirect(org_url(request, "tenants_settings:keys"))


@role_required(Role.ADMIN)
def api_key_origins(request: HttpRequest, key_id: int) -> HttpResponse:
    key = _api_key(request, key_id)
    if key.kind != KeyKind.PUBLIC or key.revoked_at is not None:
        # Origins only gate live public keys: a revoked or secret key's would be saved and never checked.
        raise Http404("Only an active public key has allowed origins.")
    form = OriginsForm(request.POST or None, initial={"allowed_origins": "\n".join(key.allowed_origins)})
    if request.method == "POST" and form.is_valid():
        try:
            services.api_key_set_origins(key=key, allowed_origins=form.origins())
        except ValidationError as exc:
            _add_form_errors(form, exc)
        else:
            messages.success(request, f"Allowed origins of '{key.name}' saved.")
            return redirect(org_url(request, "tenants_settings:keys"))
    return TemplateResponse(request, "tenants/api_key_origins.html", {"key": key, "form": form})


@role_required(Role.ADMIN)
def widget_security(request: HttpRequest) -> HttpResponse:
    organization = request.tenant  # type: ignore[attr-defined]
    if request.method == "POST":
        services.widget_security_set(
            organization=organization,
            require_signed_tokens=request.POST.get("require_signed_tokens") == "on",
            rotate_secret=request.POST.get("rotate") == "1",
        )
        messages.success(request, "Widget security saved.")
        return redirect(org_url(request, "tenants_settings:widget"))
    return TemplateResponse(request, "tenants/widget_security.html", {"nav": "widget"})
