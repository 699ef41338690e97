"""Demo users (printed passwords), a funded artist wallet, a provider node with a local agent config,
and the generated demo scene for the artist. Safe to run again: passwords are reset and printed."""

import json
import secrets
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from marketplace.accounts.models import User
from marketplace.accounts.services import user_create
from marketplace.jobs.services import job_accept, job_quote
from marketplace.ledger.models import Account
from marketplace.ledger.services import Leg, account_get, transfer
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.services import node_create

DEMO_CREDIT = 500 * settings.MICRO


class Command(BaseCommand):
    help = "Create demo users, credit, a local node and the demo scene"

    def add_arguments(self, parser) -> None:
        parser.add_argument("--agent-config", type=Path, default=settings.VAR_DIR / "agent" / "config.json")
        parser.add_argument("--no-scene", action="store_true")

    def handle(self, *args, agent_config: Path, no_scene: bool, **options) -> None:
        passwords = {}
        for username, role in (
            ("artist", User.Role.ARTIST),
            ("provider", User.Role.PROVIDER),
            ("admin", User.Role.ADMIN),
        ):
            password = secrets.token_urlsafe(9)
            user = User.objects.filter(username=username).first()
            if user is None:
                user = user_create(username=username, password=password, role=role)
            else:
                user.set_password(password)
                user.save(update_fields=["password"])
            if role == User.Role.ADMIN:
                User.objects.filter(pk=user.pk).update(is_staff=True, is_superuser=True)
            passwords[username] = password
        artist = User.objects.get(username="artist")
        transfer(
            key="demo:credit:artist",
            memo="demo credit (not real money)",
            legs=[
                Leg(account_get(kind=Account.Kind.PAYMENT_CLEARING), -DEMO_CREDIT),
                Leg(account_get(kind=Account.Kind.ARTIST_WALLET, owner=artist), DEMO_CREDIT),
            ],
        )
        provider = User.objects.get(username="provider")
        WorkerNode.objects.filter(owner=provider, name="local agent").delete()
        _, token = node_create(owner=provider, name="local agent")
        agent_config.parent.mkdir(parents=True, exist_ok=True)
        agent_config.write_text(
            json.dumps(
                {
                    "server": settings.PUBLIC_URL,
                    "token": token,
                    "cache_dir": str(agent_config.parent / "cache"),
                },
                indent=2,
            )
        )
        agent_config.chmod(0o600)
        if not no_scene and not artist.scenes.exists():
            call_command("make_demo_scene", owner="artist")
            # A first job, so the local agent renders the demo end to end right away.
            scene = artist.scenes.get()
            job = job_quote(owner=artist, scene=scene, name="Demo animation", frame_end=8)
            job_accept(job_id=job.pk, owner=artist)
            self.stdout.write(f"Demo job {job.pk}: 8 frames queued for the local agent")
        self.stdout.write(self.style.SUCCESS("Demo users (passwords change on every start):"))
        for username, password in passwords.items():
            self.stdout.write(f"  {username:9} {password}")
        self.stdout.write(f"Local agent config: {agent_config}")
