from django.urls import path

from tenants.portal import views

urlpatterns = [
    path("members/", views.members, name="settings-members"),
    path("members/<int:membership_id>/role/", views.member_role, name="settings-member-role"),
    path("members/<int:membership_id>/remove/", views.member_remove, name="settings-member-remove"),
    path("keys/", views.api_keys, name="settings-keys"),
    path("keys/<int:key_id>/revoke/", views.api_key_revoke_view, name="settings-key-revoke"),
    path("keys/<int:key_id>/origins/", views.api_key_origins, name="settings-key-origins"),
    path("widget/", views.widget_security, name="settings-widget"),
]
