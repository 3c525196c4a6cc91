from django.urls import path

from tenants.portal import views

app_name = "tenants"

urlpatterns = [
    path("", views.home, name="portal-home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("signup/", views.signup, name="signup"),
    path("orgs/", views.organization_list, name="organization-list"),
    path("invite/<str:token>/", views.invitation_accept_view, name="invitation-accept"),
]
