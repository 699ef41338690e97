from django.contrib import admin

from marketplace.verification.models import CanaryAnswer, CropCheck, FrameCheck, NodeTrust, TrustEvent


@admin.register(NodeTrust)
class NodeTrustAdmin(admin.ModelAdmin):
    list_display = ("node", "consecutive_passes", "check_rate", "checks_passed", "checks_failed")


@admin.register(TrustEvent)
class TrustEventAdmin(admin.ModelAdmin):
    list_display = ("node", "kind", "frame", "created_at", "reason")
    list_filter = ("kind",)


class CropCheckInline(admin.TabularInline):
    model = CropCheck
    extra = 0
    readonly_fields = (
        "crop",
        "state",
        "verifier",
        "verify_lease",
        "reference_key",
        "metrics",
        "reason",
        "node_verdict",
        "dispatched_at",
        "decided_at",
    )


@admin.register(FrameCheck)
class FrameCheckAdmin(admin.ModelAdmin):
    list_display = ("frame", "node", "kind", "state", "check_rate", "created_at", "decided_at")
    list_filter = ("kind", "state")
    inlines = [CropCheckInline]


@admin.register(CanaryAnswer)
class CanaryAnswerAdmin(admin.ModelAdmin):
    list_display = ("frame", "answer_key", "created_at")
