from django.apps import AppConfig


class FeedbackConfig(AppConfig):
    name = "feedback"
    verbose_name = "Feedback and traces"

    def ready(self) -> None:
        from feedback import tasks  # noqa: F401 - registers the rollup hook with ingestion
        from feedback.api import hot  # noqa: F401 - registers the widget's hot path
