"""The admin of django_atw's models, one module per model admin; importing registers them."""

from .cache import CacheEntryAdmin
from .dashboard import DashboardAdmin
from .schedules import ScheduleAdmin
from .tasks import TaskRecordAdmin
from .tokens import ApiTokenAdmin
from .workers import WorkerProcessAdmin

__all__ = [
    "ApiTokenAdmin",
    "CacheEntryAdmin",
    "DashboardAdmin",
    "ScheduleAdmin",
    "TaskRecordAdmin",
    "WorkerProcessAdmin",
]
