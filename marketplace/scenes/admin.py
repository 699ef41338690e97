from django.contrib import admin

from marketplace.scenes.models import Scene


@admin.register(Scene)
class SceneAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "kind", "status", "size", "created_at"]
    list_filter = ["status", "kind"]
    search_fields = ["name", "sha256", "owner__username"]
    readonly_fields = ["sha256", "size", "blend_path", "report", "refusal", "warnings", "created_at", "inspected_at"]
