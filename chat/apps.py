from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from chat.sessions import ended_on_logout

        user_logged_out.connect(ended_on_logout, dispatch_uid="chat.sessions.ended_on_logout")
