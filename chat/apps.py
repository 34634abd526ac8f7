from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import m2m_changed, post_delete, post_save

        from chat import teams
        from chat.models import Attachment, GroupPolicy
        from chat.services.attachments import attachments_counted_for_purge, files_forget_on_delete
        from chat.services.retention import conversations_purging
        from chat.sessions import ended_on_logout

        user_logged_out.connect(ended_on_logout, dispatch_uid="chat.sessions.ended_on_logout")
        # Files go with their rows however those are deleted: a conversation, an account, the admin.
        post_delete.connect(files_forget_on_delete, sender=Attachment, dispatch_uid="chat.attachments.files")
        conversations_purging.connect(attachments_counted_for_purge, dispatch_uid="chat.attachments.purge")
        # The group policies a process keeps for a while (chat/teams.py) are forgotten when one changes here.
        changes = ((post_save, GroupPolicy), (post_delete, GroupPolicy), (post_delete, Group))
        for index, (signal, sender) in enumerate(changes):
            signal.connect(teams.policies_forget, sender=sender, dispatch_uid=f"chat.teams.forget.{index}")
        m2m_changed.connect(
            teams.policies_forget, sender=get_user_model().groups.through, dispatch_uid="chat.teams.memberships"
        )
