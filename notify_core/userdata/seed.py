"""Demo users, categories and templates (idempotent): what `make demo` routes to."""

from __future__ import annotations

from datetime import time

from notify_core.topics import Channel
from notify_core.userdata.models import Template
from notify_core.userdata.repository import UserDataRepository

WELCOME = {
    "en": (
        "Welcome, {{ name }}",
        "Hello {{ name }}, your account is ready.",
        "<p>Hello <b>{{ name }}</b>, your account is ready.</p>",
    ),
    "fr": (
        "Bienvenue, {{ name }}",
        "Bonjour {{ name }}, votre compte est prêt.",
        "<p>Bonjour <b>{{ name }}</b>, votre compte est prêt.</p>",
    ),
}
SHIPPED = {
    "en": (
        "Order {{ order }} shipped",
        "Your order {{ order }} is on its way.",
        "<p>Your order <b>{{ order }}</b> is on its way.</p>",
    ),
    "fr": (
        "Commande {{ order }} expédiée",
        "Votre commande {{ order }} est en route.",
        "<p>Votre commande <b>{{ order }}</b> est en route.</p>",
    ),
}
ALERT = {
    "en": (
        "New sign-in",
        "A new sign-in to your account from {{ place }}.",
        "<p>A new sign-in from <b>{{ place }}</b>.</p>",
    ),
    "fr": (
        "Nouvelle connexion",
        "Nouvelle connexion à votre compte depuis {{ place }}.",
        "<p>Nouvelle connexion depuis <b>{{ place }}</b>.</p>",
    ),
}


def seed_demo(repo: UserDataRepository) -> None:
    repo.upsert_category("account")
    repo.upsert_category("security", mandatory=True)
    repo.upsert_category("marketing", caps={Channel.IOS: 3, Channel.ANDROID: 3, Channel.EMAIL: 1})
    for template_id, texts in (("welcome", WELCOME), ("order-shipped", SHIPPED), ("security-alert", ALERT)):
        for locale, (title, body, html) in texts.items():
            for channel in Channel:
                repo.put_template(
                    Template(
                        template_id,
                        channel,
                        locale,
                        1,
                        title=title,
                        body=body,
                        sms_text=body,
                        email_subject=title,
                        email_html=html,
                    )
                )
    # Ada: every kind of target; marketing by push and e-mail only.
    repo.upsert_user("demo-ada", "en", "Europe/London")
    repo.add_device(
        "demo-ada", "ios", "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90", "notify-demo"
    )
    repo.add_device(
        "demo-ada", "ios", "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0", "notify-demo"
    )
    repo.add_device("demo-ada", "android", "fcm-demo-ada-pixel", "notify-demo")
    repo.add_email("demo-ada", "ada@example.com")
    repo.add_phone("demo-ada", "+442079460001")  # Ofcom's drama range: valid, and nobody's
    repo.set_preference("demo-ada", "marketing", Channel.SMS, opted_in=False)
    # Grace: French, e-mail and SMS.
    repo.upsert_user("demo-grace", "fr", "Europe/Paris")
    repo.add_email("demo-grace", "grace@example.com")
    repo.add_phone("demo-grace", "+33612345678")
    # Linus: Android only, quiet from 22:00 to 07:00 in Helsinki.
    repo.upsert_user("demo-linus", "en", "Europe/Helsinki")
    repo.add_device("demo-linus", "android", "fcm-demo-linus-phone", "notify-demo")
    repo.set_quiet_hours("demo-linus", time(22, 0), time(7, 0))
