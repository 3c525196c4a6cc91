from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "evaluation"

    def ready(self) -> None:
        # feedback never imports evaluation: the trace read learns about scores and labels from this hook.
        from evaluation.selectors import trace_labels_section, trace_scores_section
        from feedback.selectors import trace_extras_register

        trace_extras_register("scores", trace_scores_section, template="evaluation/trace_scores.html")
        trace_extras_register("labels", trace_labels_section, template="evaluation/trace_labels.html")
