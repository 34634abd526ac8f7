"""Groups in the admin: Django's own page, plus this app's settings of a group as inlines."""

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.models import Group

from chat.admin.retention import GroupRetentionInline
from chat.admin.reviewing import ReviewScopeInline

admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(DjangoGroupAdmin):
    inlines = [ReviewScopeInline, GroupRetentionInline]
