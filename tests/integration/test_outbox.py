"""Outbox delivery to a real local SMTP server (aiosmtpd) and a real local HTTP receiver: signatures, retries
with backoff, permanent refusals, idempotency keys and restarts."""

from __future__ import annotations

import email
import email.policy
import json
from email.message import EmailMessage

import psycopg

from cases import outbox
from floor import config
from lykta.process import free_port
from storage import outbox as outbox_store
from storage.outbox import NewMessage
from tests.helpers import Inbox, Receiver
from tests.integration.test_cases import NOW, add_crews, finding, sync
from tests.integration.test_rules import NIGHT


def point_crews_at(url: str, receiver: Receiver) -> None:
    add_crews(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE crews SET webhook_url = %s || '/hooks/' || crew_id", (receiver.url(""),))


def deliver(url: str, port: int, now: float) -> outbox.Delivery:
    settings = config.load(environ={}, smtp_port=port, smtp_from="lykta@solvik.example", outbox_max_attempts=3)
    with psycopg.connect(url, autocommit=True) as conn:
        return outbox.deliver(conn, settings, now)


def test_work_orders_reach_the_crew_by_mail_and_signed_webhook_once(
    town_url: str, smtp: tuple[int, Inbox], receiver: Receiver
) -> None:
    port, inbox = smtp
    point_crews_at(town_url, receiver)
    finding(town_url, "SL-0003", "lampFailure", NIGHT)
    sync(town_url, NOW)
    assert deliver(town_url, port, NOW).sent == 2
    assert deliver(town_url, port, NOW + 60).sent == 0  # nothing sent twice
    [mail] = inbox.messages
    assert mail["to"] == ["ljus-norr@crews.example"]
    parsed = email.message_from_bytes(mail["data"].encode(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert str(parsed["Subject"]).startswith("[Arbetsorder #")  # the tenant writes Swedish
    assert "Släckt lampa: SL-0003" in parsed.get_content()
    [hook] = receiver.requests
    assert hook["path"] == "/hooks/ljus-norr"
    headers = {k.lower(): v for k, v in hook["headers"].items()}
    expected = outbox.sign("s3cret", headers["x-lykta-timestamp"], hook["body"])
    assert headers["x-lykta-signature"] == expected
    assert headers["idempotency-key"].startswith("solvik:wo-")
    payload = json.loads(hook["body"])
    assert payload["event"] == "assigned"
    assert payload["work_order"]["asset_id"] == "SL-0003"
    assert payload["work_order"]["crew_id"] == "ljus-norr"


def test_failed_webhooks_retry_with_backoff_and_refusals_stop(
    town_url: str, smtp: tuple[int, Inbox], receiver: Receiver
) -> None:
    port, _ = smtp
    point_crews_at(town_url, receiver)
    receiver.answers = [503, 500]
    finding(town_url, "SL-0003", "lampFailure", NIGHT)
    sync(town_url, NOW)
    first = deliver(town_url, port, NOW)
    assert (first.sent, first.retrying) == (1, 1)  # the e-mail went; the webhook waits 30 s
    assert deliver(town_url, port, NOW + 10).sent == 0
    second = deliver(town_url, port, NOW + 31)
    assert second.retrying == 1  # 500 again: now it waits a minute
    assert deliver(town_url, port, NOW + 31 + 59).sent == 0
    assert deliver(town_url, port, NOW + 31 + 61).sent == 1
    assert len(receiver.requests) == 3
    keys = {r["headers"]["Idempotency-Key"] for r in receiver.requests}
    assert len(keys) == 1  # every attempt carries the same key: the receiver can drop repeats

    receiver.answers = [410]
    finding(town_url, "SL-0004", "lampFailure", NIGHT)
    sync(town_url, NOW + 200)
    refused = deliver(town_url, port, NOW + 200)
    assert (refused.sent, refused.failed) == (1, 1)
    with psycopg.connect(town_url) as conn:
        row = conn.execute("SELECT last_error FROM outbox WHERE failed_at IS NOT NULL").fetchone()
    assert row is not None and "HTTP 410" in row[0]


def test_messages_wait_in_the_database_while_the_mail_server_is_down(
    town_url: str, smtp: tuple[int, Inbox], receiver: Receiver
) -> None:
    port, inbox = smtp
    point_crews_at(town_url, receiver)
    finding(town_url, "SL-0003", "lampFailure", NIGHT)
    sync(town_url, NOW)
    down = free_port()  # nothing listens there
    result = deliver(town_url, down, NOW)
    assert (result.sent, result.retrying) == (1, 1)
    # a new process later (nothing in memory): the message is still due and goes out
    assert deliver(town_url, port, NOW + 31).sent == 1
    assert len(inbox.messages) == 1
    # queueing the same message again (same idempotency key) adds nothing
    with psycopg.connect(town_url, autocommit=True) as conn:
        key = conn.execute("SELECT idempotency_key FROM outbox WHERE channel = 'email'").fetchone()
        assert key is not None
        again = NewMessage("solvik", "email", "x@y.z", "s", {}, key[0], NOW)
        assert outbox_store.enqueue(conn, again) is False
    # after the last attempt a message is given up, with its error kept
    finding(town_url, "SL-0004", "lampFailure", NIGHT)
    sync(town_url, NOW + 100)
    for n in range(3):
        deliver(town_url, down, NOW + 100 + 4000 * n)
    with psycopg.connect(town_url) as conn:
        row = conn.execute(
            "SELECT attempts, failed_at IS NOT NULL, last_error FROM outbox WHERE channel = 'email' "
            "ORDER BY message_id DESC LIMIT 1"
        ).fetchone()
    assert row is not None and row[0] == 3 and row[1] is True and "refused" in row[2].lower()
