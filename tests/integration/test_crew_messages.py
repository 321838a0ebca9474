"""What a crew is told, read as it receives it: the e-mail through a real local SMTP server (aiosmtpd) and the
webhook through a real local HTTP receiver."""

from __future__ import annotations

import email
import email.policy
import json
from email.message import EmailMessage
from typing import Any

from tests.conftest import Api
from tests.helpers import Inbox, Receiver
from tests.integration.test_api import bearer
from tests.integration.test_cases import NOW, clear, finding, sync
from tests.integration.test_outbox import deliver, point_crews_at
from tests.integration.test_rules import NIGHT


def mails(inbox: Inbox) -> list[dict[str, Any]]:
    """Each e-mail as its reader sees it: to whom, the subject and the text."""
    out = []
    for m in inbox.messages:
        parsed = email.message_from_bytes(m["data"].encode(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        out.append({"to": m["to"][0], "subject": str(parsed["Subject"]), "text": parsed.get_content()})
    return out


def test_a_cancelled_work_order_says_so(town_url: str, smtp: tuple[int, Inbox], receiver: Receiver) -> None:
    """The cancellation e-mail was the assignment e-mail again, word for word: a crew reading e-mail drove out."""
    port, inbox = smtp
    point_crews_at(town_url, receiver)
    fid = finding(town_url, "SL-0003", "lampFailure", NIGHT)
    sync(town_url, NOW)
    deliver(town_url, port, NOW)
    clear(town_url, fid, NOW + 600)  # the lamp burns again before anyone came
    sync(town_url, NOW + 700)
    deliver(town_url, port, NOW + 700)
    assigned, cancelled = mails(inbox)
    assert assigned["to"] == cancelled["to"] == "ljus-norr@crews.example"
    assert cancelled["subject"] != assigned["subject"] and "AVBRUTEN" in cancelled["subject"]
    assert cancelled["text"].startswith("Arbetsordern är AVBRUTEN: åk inte ut för den.")
    assert "Varför: felet försvann innan det åtgärdades" in cancelled["text"]
    assert "AVBRUTEN" not in assigned["subject"] and assigned["text"].startswith("En ny arbetsorder")
    hooks = [json.loads(r["body"]) for r in receiver.requests]
    assert [h["event"] for h in hooks] == ["assigned", "cancelled"]
    assert hooks[1]["why"] == "felet försvann innan det åtgärdades"


def test_an_operator_closing_the_case_tells_the_crew_why(api: Api, smtp: tuple[int, Inbox], receiver: Receiver) -> None:
    import httpx

    port, inbox = smtp
    point_crews_at(api.url, receiver)
    finding(api.url, "SL-0003", "lampFailure", NIGHT)
    sync(api.url, api.clock[0])
    token = api.token("solvik", "operator")
    case_id = httpx.get(api.base + "/api/v1/cases", headers=bearer(token)).json()[0]["case_id"]
    closed = httpx.post(api.base + f"/api/v1/cases/{case_id}/close", headers=bearer(token),
                        json={"note": "Dubblett, hanteras i ärende 36"})  # fmt: skip
    assert closed.status_code == 200, closed.text
    deliver(api.url, port, api.clock[0])
    cancelled = mails(inbox)[-1]
    assert "AVBRUTEN" in cancelled["subject"]
    assert "Varför: avslutat av kommunen: Dubblett, hanteras i ärende 36" in cancelled["text"]


def test_reassigning_tells_the_crew_it_was_taken_from(api: Api, smtp: tuple[int, Inbox], receiver: Receiver) -> None:
    """The previous crew heard nothing and would have gone out as well."""
    import httpx

    port, inbox = smtp
    point_crews_at(api.url, receiver)
    finding(api.url, "SL-0003", "lampFailure", NIGHT)
    sync(api.url, api.clock[0])
    deliver(api.url, port, api.clock[0])
    token = api.token("solvik", "operator")
    case_id = httpx.get(api.base + "/api/v1/cases", headers=bearer(token)).json()[0]["case_id"]
    moved = httpx.post(api.base + f"/api/v1/cases/{case_id}/assign", headers=bearer(token), json={"crew_id": "ljus"})
    assert moved.status_code == 200, moved.text
    deliver(api.url, port, api.clock[0] + 60)
    first, taken, given = mails(inbox)
    assert first["to"] == taken["to"] == "ljus-norr@crews.example" and given["to"] == "ljus@crews.example"
    assert "ÅTERKALLAD" in taken["subject"] and taken["text"].startswith("Arbetsordern har gått till ett annat lag")
    assert given["text"].startswith("En ny arbetsorder") and "ÅTERKALLAD" not in given["subject"]
    hooks = {(r["path"], json.loads(r["body"])["event"]) for r in receiver.requests}
    assert hooks == {("/hooks/ljus-norr", "assigned"), ("/hooks/ljus-norr", "withdrawn-ljus-norr"),
                     ("/hooks/ljus", "assigned-ljus")}  # fmt: skip
