"""Root conftest: registers the shared fixture modules (Saleor-style fixture plugins)."""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.organizations",
    "tests.fixtures.server",
    "tests.fixtures.api",
    "tests.fixtures.browser",
    "tests.fixtures.stripe",
]
