"""The evaluation app's models, one module per area; every model is importable from here.

Add a module's models to the imports below (Django registers the models it imports).
"""

from evaluation.models.calibration import (
    CalibrationCursor,
    CalibrationSnapshot,
    CalibrationTarget,
    WidgetLabelMap,
)
from evaluation.models.experiments import (
    Alert,
    AlertMetric,
    AlertRule,
    AlertState,
    ChannelKind,
    Delivery,
    DeliveryStatus,
    DigestDelivery,
    DriftSnapshot,
    Experiment,
    ExperimentStatus,
    NotificationChannel,
    PrimaryMetric,
)
from evaluation.models.judges import (
    BackfillRun,
    BackfillStatus,
    Judge,
    JudgeKind,
    JudgeVersion,
    OutputWait,
    ProviderKey,
    SamplingRule,
    Score,
    ScoreStatus,
)
from evaluation.models.labels import Label, LabelSource, Rubric, RubricScale, trace_labels_sql
from evaluation.models.queues import AnnotationQueue, QueueDesign, QueueItem, QueueSlot, SlotStatus

__all__ = [
    "Alert",
    "AlertMetric",
    "AlertRule",
    "AlertState",
    "ChannelKind",
    "Delivery",
    "DeliveryStatus",
    "DigestDelivery",
    "DriftSnapshot",
    "Experiment",
    "ExperimentStatus",
    "NotificationChannel",
    "PrimaryMetric",
    "AnnotationQueue",
    "BackfillRun",
    "BackfillStatus",
    "CalibrationCursor",
    "CalibrationSnapshot",
    "CalibrationTarget",
    "Judge",
    "JudgeKind",
    "JudgeVersion",
    "OutputWait",
    "Label",
    "LabelSource",
    "ProviderKey",
    "QueueDesign",
    "QueueItem",
    "QueueSlot",
    "Rubric",
    "RubricScale",
    "SamplingRule",
    "Score",
    "ScoreStatus",
    "SlotStatus",
    "WidgetLabelMap",
    "trace_labels_sql",
]
