"""Changing the running broker's accounts through Mosquitto's dynamic-security plugin.

The plugin reads its file only when the broker starts; while it runs, accounts and roles change through
commands published to ``$CONTROL/dynamic-security/v1`` by an account with the right to (lykta's broker
administrator, whose password lies in ``<state>/secrets/mqtt-admin``). The plugin answers every command on
``$CONTROL/dynamic-security/v1/response`` and saves its file itself after each change.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
from collections.abc import Sequence
from typing import Any

from floor import mqtt_wire as wire
from floor.errors import LyktaError

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
COMMANDS_PER_MESSAGE = 200
"""Commands sent in one message: well below the broker's packet limit with a device's ACLs in each."""

Command = dict[str, Any]


class ControlError(LyktaError):
    """The broker could not be reached as its administrator, or refused a command."""


async def _read_packet(reader: asyncio.StreamReader, buf: bytearray) -> tuple[int, bytes]:
    """The next packet: (first byte, body)."""
    while True:
        framed = wire.frame(buf, 0, len(buf))
        if framed is not None:
            start, stop = framed
            header, body = buf[0], bytes(buf[start:stop])
            del buf[:stop]
            return header, body
        chunk = await reader.read(65536)
        if not chunk:
            raise ControlError("the broker closed the administrator's connection")
        buf += chunk


async def run_commands(
    host: str,
    port: int,
    login: tuple[str, str],
    commands: Sequence[Command],
    *,
    tls: ssl.SSLContext | None = None,
    within: float = 30,
) -> list[dict[str, Any]]:
    """Send the commands in order and return the plugin's answer to each (a dict with ``command`` and, when it
    failed, ``error``)."""
    try:
        async with asyncio.timeout(within):
            return await _run(host, port, login, commands, tls)
    except TimeoutError:
        raise ControlError(f"the broker at {host}:{port} did not answer its administrator within {within} s") from None
    except OSError as exc:
        raise ControlError(f"cannot reach the broker at {host}:{port} as its administrator: {exc}") from None
    except wire.MalformedPacket as exc:
        raise ControlError(f"the broker at {host}:{port} broke the protocol: {exc}") from None


async def _run(
    host: str, port: int, login: tuple[str, str], commands: Sequence[Command], tls: ssl.SSLContext | None
) -> list[dict[str, Any]]:
    reader, writer = await asyncio.open_connection(host, port, ssl=tls)
    try:
        client_id = f"{login[0]}-{secrets.token_hex(4)}"
        writer.write(
            wire.connect_packet(client_id, keepalive=60, clean_start=True, username=login[0], password=login[1])
        )
        await writer.drain()
        connack = await wire.read_connack(reader)
        if connack.reason >= 0x80:
            raise ControlError(f"the broker refused its administrator {login[0]!r}: {wire.reason_text(connack.reason)}")
        writer.write(wire.subscribe_packet(1, [RESPONSE_TOPIC], qos=0))
        await writer.drain()
        buf = bytearray()
        header, body = await _read_packet(reader, buf)
        if header >> 4 != wire.SUBACK or any(code >= 0x80 for code in wire.parse_suback(body)[1]):
            raise ControlError("the broker did not let its administrator read the dynamic-security answers")
        answers: list[dict[str, Any]] = []
        for first in range(0, len(commands), COMMANDS_PER_MESSAGE):
            chunk = list(commands[first : first + COMMANDS_PER_MESSAGE])
            payload = json.dumps({"commands": chunk}).encode()
            writer.write(wire.publish_packet(wire.string(CONTROL_TOPIC), payload, 0, 0))
            await writer.drain()
            while True:
                header, body = await _read_packet(reader, buf)
                if header >> 4 != wire.PUBLISH:
                    continue
                topic, _, at = wire.parse_publish(body, header, 0, len(body))
                if topic == RESPONSE_TOPIC:
                    responses = json.loads(body[at:]).get("responses", [])
                    answers.extend(responses)
                    break
        writer.write(wire.DISCONNECT_PACKET)
        await writer.drain()
        return answers
    finally:
        writer.close()


def failures(answers: Sequence[dict[str, Any]], *, tolerated: Sequence[str] = ()) -> list[str]:
    """The errors among the answers, except those named in ``tolerated`` (e.g. "Client not found")."""
    return [f"{a.get('command')}: {a['error']}" for a in answers if a.get("error") and a["error"] not in tolerated]
