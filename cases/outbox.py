"""Delivering the outbox: e-mail over SMTP and webhooks (JSON signed with HMAC-SHA256), retried with backoff.

Messages are written to the ``outbox`` table in the transaction that caused them
(a work order assigned, a case escalated), so none is lost when a process stops.
A sender claims due messages with ``FOR UPDATE SKIP LOCKED`` (several senders
never take the same one), sends them, and records the outcome in the same
transaction. A crash after sending and before that commit sends the message
again on restart: every message carries its idempotency key (the
``Idempotency-Key`` header of a webhook, the ``Message-ID`` of an e-mail) so a
receiver can drop the repeat.

Links to lykta's own pages are completed with ``api_public_url`` when a message is sent (cases/messages.py).

Webhook signature: ``X-Lykta-Signature: sha256=<hex>`` of
``<X-Lykta-Timestamp>.<body>`` with the crew's webhook secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.utils import formatdate

import psycopg

from cases import messages
from cases.errors import Permanent
from floor.config import Settings
from storage import crews as crew_store
from storage import outbox as outbox_store
from storage.outbox import Message

log = logging.getLogger("lykta.outbox")
BACKOFF_S = 30.0
MAX_BACKOFF_S = 3600.0
TIMEOUT_S = 10.0


@dataclass
class Delivery:
    sent: int = 0
    retrying: int = 0
    failed: int = 0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: 30 s, 1 min, 2 min, ... up to 1 h."""
    return float(min(MAX_BACKOFF_S, BACKOFF_S * 2 ** max(0, attempts - 1)))


def public_url(settings: Settings) -> str:
    """How people reach lykta's pages: ``api_public_url``, else the API's own address."""
    return settings.api_public_url or f"http://{settings.api_host}:{settings.api_port}"


def deliver(conn: psycopg.Connection, settings: Settings, now: float, limit: int = 100) -> Delivery:
    """Send the due messages (at most ``limit``), each in its own transaction."""
    report = Delivery()
    for _ in range(limit):
        with conn.transaction():
            claimed = outbox_store.claim(conn, now, 1)
            if not claimed:
                break
            m = replace(claimed[0], body=messages.resolve_links(claimed[0].body, public_url(settings)))
            try:
                if m.channel == "email":
                    send_email(settings, m)
                else:
                    send_webhook(conn, m, now)
            except Permanent as exc:
                outbox_store.failed(conn, m.message_id, str(exc), None, now)
                log.error("outbox: %s to %s refused for good: %s", m.channel, m.target, exc)  # noqa: TRY400 - the reason is the message
                report.failed += 1
                continue
            except (OSError, smtplib.SMTPException, urllib.error.URLError) as exc:
                attempts = int(m.attempts) + 1
                if attempts >= settings.outbox_max_attempts:
                    outbox_store.failed(conn, m.message_id, str(exc), None, now)
                    log.error(  # noqa: TRY400 - the reason is the message
                        "outbox: %s to %s given up after %d attempts: %s", m.channel, m.target, attempts, exc
                    )
                    report.failed += 1
                else:
                    outbox_store.failed(conn, m.message_id, str(exc), now + backoff(attempts), now)
                    log.warning(
                        "outbox: %s to %s failed (attempt %d), retrying: %s", m.channel, m.target, attempts, exc
                    )
                    report.retrying += 1
                continue
            outbox_store.sent(conn, m.message_id, now)
            report.sent += 1
    return report


def send_email(settings: Settings, m: Message) -> None:
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = m.target
    msg["Subject"] = m.subject
    msg["Date"] = formatdate(usegmt=True)
    domain = settings.smtp_from.rsplit("@", 1)[-1]
    msg["Message-ID"] = f"<{hashlib.sha256(m.idempotency_key.encode()).hexdigest()[:32]}@{domain}>"
    msg["X-Lykta-Idempotency-Key"] = m.idempotency_key
    msg.set_content(str(m.body.get("text", "")))
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT_S) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
        refused = smtp.send_message(msg)
    if refused:
        raise Permanent(f"recipients refused: {sorted(refused)}")


def send_webhook(conn: psycopg.Connection, m: Message, now: float) -> None:
    body = json.dumps(m.body, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(now))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "lykta-outbox",
        "Idempotency-Key": m.idempotency_key,
        "X-Lykta-Timestamp": timestamp,
    }
    secret = crew_store.webhook_secret(conn, m.tenant_id, m.target)
    if secret:
        headers["X-Lykta-Signature"] = sign(secret, timestamp, body)
    request = urllib.request.Request(m.target, data=body, headers=headers, method="POST")  # noqa: S310 - http(s) only, checked when the crew is saved
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        exc.close()
        if 400 <= exc.code < 500 and exc.code not in (408, 429):
            raise Permanent(f"HTTP {exc.code} {exc.reason}") from None
        raise
