from django.contrib import admin

from training.models import BaseModel, FineTuneJob


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    list_display = ["name", "path", "created_at"]
    search_fields = ["name", "path"]


@admin.register(FineTuneJob)
class FineTuneJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "dataset", "model", "method", "status", "step", "total_steps", "attempts",
                    "worker", "heartbeat_at", "created_at"]  # fmt: skip
    list_filter = ["status", "method"]
    list_select_related = ["project", "dataset"]
    raw_id_fields = ["project", "dataset", "snapshot", "created_by", "api_key", "weights_deleted_by",
                     "weights_deleted_by_key"]  # fmt: skip
    readonly_fields = ["events_offset", "heartbeat_at", "worker", "attempts"]
