"""Internal Celery app: tasks of the marketplace itself (inspection, matching, reaping, settlement).

Agents never consume from this broker; they get their own (see dispatch.agent_broker).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

app = Celery("marketplace")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
