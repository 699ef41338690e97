from django.contrib import admin

from marketplace.ledger.models import Account, LedgerTransaction, Posting


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only services write (money records, audit entries): the admin shows them, never changes them."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class PostingInline(admin.TabularInline):
    model = Posting
    extra = 0
    can_delete = False
    readonly_fields = ("account", "amount")

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # postings are written only by the ledger service


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ("key", "kind", "owner", "balance")
    list_filter = ("kind",)
    search_fields = ("key", "owner__username")
    readonly_fields = ("key", "kind", "owner", "ref", "allow_negative", "balance")


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(admin.ModelAdmin):
    list_display = ("idempotency_key", "memo", "created_at")
    search_fields = ("idempotency_key", "memo")
    readonly_fields = ("idempotency_key", "memo", "metadata")
    inlines = [PostingInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
