from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from marketplace.accounts.models import ApiToken, User


@admin.register(User)
class MarketUserAdmin(UserAdmin):
    list_display = ("username", "email", "role", "is_active", "date_joined")
    list_filter = ("role", "is_active")
    fieldsets = (*UserAdmin.fieldsets, ("Marketplace", {"fields": ("role", "is_platform", "banned_at")}))


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "user", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "secret_hash")
