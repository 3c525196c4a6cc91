from django.urls import path

from tenants.portal import views

app_name = "tenants_settings"

urlpatterns = [
    # The settings have no page of their own: their address leads to the first of them (the nav's Settings).
    path("", views.settings_home, name="home"),
    path("members/", views.members, name="members"),
    path("members/<int:membership_id>/role/", views.member_role, name="member-role"),
    path("members/<int:membership_id>/remove/", views.member_remove, name="member-remove"),
    path("keys/", views.api_keys, name="keys"),
    path("keys/<int:key_id>/revoke/", views.api_key_revoke_view, name="key-revoke"),
    path("keys/<int:key_id>/origins/", views.api_key_origins, name="key-origins"),
    path("widget/", views.widget_security, name="widget"),
]
