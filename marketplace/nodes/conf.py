from django.conf import settings

HEARTBEAT_SECONDS = getattr(settings, "NODE_HEARTBEAT_SECONDS", 10)
# A node that has not sent a heartbeat for this long is marked offline by the reaper.
OFFLINE_AFTER_SECONDS = getattr(settings, "NODE_OFFLINE_AFTER_SECONDS", 60)
