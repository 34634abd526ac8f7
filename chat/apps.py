from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_delete

        from chat.models import Attachment
        from chat.services.attachments import attachments_counted_for_purge, files_forget_on_delete
        from chat.services.retention import conversations_purging
        from chat.sessions import ended_on_logout

        user_logged_out.connect(ended_on_logout, dispatch_uid="chat.sessions.ended_on_logout")
        # Files go with their rows however those are deleted: a conversation, an account, the admin.
        post_delete.connect(files_forget_on_delete, sender=Attachment, dispatch_uid="chat.attachments.files")
        conversations_purging.connect(attachments_counted_for_purge, dispatch_uid="chat.attachments.purge")
