from django.conf import settings
from django.db import models
from django.db.models import Value
from django.db.models.fields.json import KeyTextTransform, compile_json_path
from django.db.models.functions import Coalesce


class KeyText(KeyTextTransform):
    """A key of a JSON column as text, and SQL NULL for a JSON null on SQLite too (Django's KeyTextTransform gives
    the text 'null' there)."""

    def as_sqlite(self, compiler, connection):
        lhs, params, keys = self.preprocess_lhs(compiler, connection)
        return f"JSON_EXTRACT({lhs}, %s)", (*params, compile_json_path(keys))


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
    # The camera a lease's manifest pins, kept by the database from the report: a lease reads this column and
    # leaves the report, which lists every file the scene references (tens to hundreds of KB), unread.
    active_camera = models.GeneratedField(
        expression=Coalesce(KeyText("active_camera", "report"), Value(""), output_field=models.TextField()),
        output_field=models.TextField(),
        db_persist=True,
    )
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


class SceneFile(models.Model):
    """One file of a scene bundle that its owner uploaded, stored once by SHA-256 (as Flamenco's Shaman does).

    The blob is shared by content; the row is per owner: a user "has" a file only after uploading its bytes
    once, so knowing a digest never lends anyone another artist's file.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="scene_files")
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "sha256"], name="scene_file_once_per_owner"),
            models.CheckConstraint(condition=models.Q(size__gte=0), name="scene_file_size_not_negative"),
            models.CheckConstraint(condition=models.Q(sha256__regex=r"^[0-9a-f]{64}$"), name="scene_file_sha256_hex"),
        ]

    def __str__(self) -> str:
        return f"{self.sha256[:10]} ({self.size} bytes)"

    @property
    def storage_key(self) -> str:
        return storage_key_of_file(self.sha256)


def storage_key_of_file(sha256: str) -> str:
    return f"scene-files/{sha256[:2]}/{sha256}"
