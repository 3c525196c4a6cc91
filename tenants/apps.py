from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Organizations"

    def ready(self) -> None:
        from django.urls import register_converter

        from tenants.converters import AnyTextConverter

        register_converter(AnyTextConverter, "text")  # before any URLconf is loaded
