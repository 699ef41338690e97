"""Read-only admin: disputes are decided on the review pages, which post to the ledger and the audit log."""

from django.contrib import admin

from marketplace.disputes.models import AuditLog, Dispute
from marketplace.ledger.admin import ReadOnlyAdmin


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = ("pk", "frame", "artist", "provider", "state", "created_at", "decided_by")
    list_filter = ("state",)


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor", "action", "object_type", "object_id")
    list_filter = ("action",)
