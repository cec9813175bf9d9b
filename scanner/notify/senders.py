"""A configured channel → the sender that delivers to it."""

from __future__ import annotations

from scanner.notify.config import ChannelConfig, EmailSettings, SlackSettings, WebhookSettings
from scanner.notify.delivery import Sender


def make_sender(channel: ChannelConfig) -> Sender:
    """The sender for ``channel``; the e-mail one (and its SMTP client) loaded only when
    a channel needs it."""
    settings = channel.settings
    if isinstance(settings, SlackSettings):
        from scanner.notify.slack import SlackSender

        return SlackSender(channel.name, settings.url, channel.timeout)
    if isinstance(settings, WebhookSettings):
        from scanner.notify.webhook import WebhookSender

        return WebhookSender(channel.name, settings.url, settings.secrets, channel.timeout)
    assert isinstance(settings, EmailSettings)
    from scanner.notify.email import EmailSender

    return EmailSender(channel.name, settings, channel.timeout)
