from django.conf import settings
from django.db import models


class Scene(models.Model):
    """An uploaded .blend or .zip bundle. The file itself lives in storage under its SHA-256 (deduplicated)."""

    class Kind(models.TextChoices):
        BLEND = "blend", ".blend file"
        ZIP = "zip", ".zip bundle"

    class Status(models.TextChoices):
        INSPECTING = "inspecting", "Inspecting"
        READY = "ready", "Ready"
        REFUSED = "refused", "Refused"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="scenes")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.BigIntegerField()
    blend_path = models.CharField(max_length=500, help_text="path of the .blend inside the bundle")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.INSPECTING)
    report = models.JSONField(default=dict, blank=True)
    refusal = models.TextField(blank=True, default="")
    warnings = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    inspected_at = models.DateTimeField(null=True, blank=True)
    # Deleted by its owner: hidden everywhere, kept (with its file) for the jobs that already used it.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(status="refused") | ~models.Q(refusal=""), name="scene_refused_has_reason"
            ),
            models.CheckConstraint(condition=models.Q(size__gte=0), name="scene_size_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.sha256[:10]})"

    @property
    def refusal_reasons(self) -> list[str]:
        return self.refusal.splitlines()

    @property
    def storage_key(self) -> str:
        return f"scenes/{self.sha256[:2]}/{self.sha256}.{self.kind}"
