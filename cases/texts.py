"""Texts for crews and citizens in the tenant's language: English, Swedish and Portuguese."""

from __future__ import annotations

LANGUAGES = ("en", "sv", "pt")

FAULTS: dict[str, dict[str, str]] = {
    "lampFailure": {"en": "Lamp out", "sv": "Släckt lampa", "pt": "Lâmpada apagada"},
    "lampUnexpectedOn": {"en": "Lamp on by day", "sv": "Lampa tänd på dagen", "pt": "Lâmpada acesa de dia"},
    "cyclingFailure": {"en": "Lamp flickering on and off", "sv": "Blinkande lampa", "pt": "Lâmpada a piscar"},
    "powerDeviation": {"en": "Lamp power out of range", "sv": "Avvikande effekt", "pt": "Potência anómala"},
    "photocellFailure": {
        "en": "Lamp switching at the wrong light (photocell)",
        "sv": "Lampa tänds vid fel ljus (skymningsrelä)",
        "pt": "Lâmpada a acender com a luz errada (fotocélula)",
    },
    "communicationFailure": {
        "en": "Controller not reporting",
        "sv": "Styrenhet svarar inte",
        "pt": "Controlador sem comunicação",
    },
    "supplyLoss": {"en": "Cabinet without supply", "sv": "Skåp utan matning", "pt": "Armário sem alimentação"},
    "doorOpen": {"en": "Cabinet door open", "sv": "Skåpsdörr öppen", "pt": "Porta do armário aberta"},
    "poleTilt": {"en": "Pole tilted or hit", "sv": "Lutande eller påkörd stolpe", "pt": "Poste inclinado ou embatido"},
    "icyRoad": {"en": "Icy road", "sv": "Halka", "pt": "Estrada com gelo"},
    "wellOverflow": {
        "en": "Stormwater well overflowing",
        "sv": "Dagvattenbrunn svämmar över",
        "pt": "Sarjeta a transbordar",
    },
    "binFull": {"en": "Bin full", "sv": "Full papperskorg", "pt": "Papeleira cheia"},
    "pumpFault": {"en": "Pump fault", "sv": "Pumpfel", "pt": "Avaria da bomba"},
}

WORDS: dict[str, dict[str, str]] = {
    "work_order": {"en": "Work order", "sv": "Arbetsorder", "pt": "Ordem de trabalho"},
    "asset": {"en": "Asset", "sv": "Objekt", "pt": "Equipamento"},
    "where": {"en": "Where", "sv": "Plats", "pt": "Local"},
    "priority": {"en": "Priority", "sv": "Prioritet", "pt": "Prioridade"},
    "due": {"en": "Due", "sv": "Åtgärdas senast", "pt": "Prazo"},
    "since": {"en": "Observed since", "sv": "Observerat sedan", "pt": "Observado desde"},
    "also": {"en": "Also affected", "sv": "Även berörda", "pt": "Também afetados"},
    "case": {"en": "Case", "sv": "Ärende", "pt": "Processo"},
    "status": {"en": "Status", "sv": "Status", "pt": "Estado"},
    "my_orders": {"en": "My work orders", "sv": "Mina arbetsordrar", "pt": "As minhas ordens de trabalho"},
    "none": {"en": "No open work orders.", "sv": "Inga öppna arbetsordrar.", "pt": "Sem ordens de trabalho abertas."},
    "accept": {"en": "Accept", "sv": "Acceptera", "pt": "Aceitar"},
    "done": {"en": "Done", "sv": "Klar", "pt": "Concluída"},
    "reject": {"en": "Reject", "sv": "Avvisa", "pt": "Rejeitar"},
    "note": {"en": "Note", "sv": "Anteckning", "pt": "Nota"},
    "reason": {"en": "Reason", "sv": "Orsak", "pt": "Motivo"},
    "sign_in": {"en": "Sign in", "sv": "Logga in", "pt": "Entrar"},
    "token": {"en": "Crew token", "sv": "Lagets nyckel", "pt": "Código da equipa"},
    "bad_token": {"en": "That token is not valid.", "sv": "Nyckeln är inte giltig.", "pt": "Código inválido."},
    "map": {"en": "Map", "sv": "Karta", "pt": "Mapa"},
    "saved": {"en": "Saved.", "sv": "Sparat.", "pt": "Guardado."},
    "why": {"en": "Why", "sv": "Varför", "pt": "Motivo"},
    "directions": {"en": "Directions", "sv": "Vägbeskrivning", "pt": "Direções"},
    "crew_page": {"en": "On the phone", "sv": "I telefonen", "pt": "No telemóvel"},
    "reports": {"en": "Citizens' reports", "sv": "Medborgares anmälningar", "pt": "Participações dos cidadãos"},
    "photo": {"en": "Photo", "sv": "Foto", "pt": "Fotografia"},
    "lamp": {"en": "Lamp", "sv": "Ljuskälla", "pt": "Lâmpada"},
    "pole_height": {"en": "pole height", "sv": "stolphöjd", "pt": "altura do poste"},
    "installed": {"en": "installed", "sv": "installerad", "pt": "instalado"},
    "luminaire": {"en": "luminaire", "sv": "armatur", "pt": "luminária"},
    "sign_out": {"en": "Sign out", "sv": "Logga ut", "pt": "Sair"},
    "signed_out": {"en": "You are signed out.", "sv": "Du är utloggad.", "pt": "Sessão terminada."},
    "revoked": {
        "en": "Your sign-in is no longer valid (the key was withdrawn or has expired). Ask your supervisor for a new "
        "one.",
        "sv": "Din inloggning gäller inte längre (nyckeln har dragits in eller gått ut). Be arbetsledaren om en ny.",
        "pt": "O seu acesso já não é válido (o código foi retirado ou expirou). Peça um novo ao responsável.",
    },
    "confirm_done": {
        "en": "Mark work order #{id} as done?",
        "sv": "Markera arbetsorder #{id} som klar?",
        "pt": "Marcar a ordem de trabalho #{id} como concluída?",
    },
    "confirm_reject": {
        "en": "Reject work order #{id}?",
        "sv": "Avvisa arbetsorder #{id}?",
        "pt": "Rejeitar a ordem de trabalho #{id}?",
    },
    "yes": {"en": "Yes", "sv": "Ja", "pt": "Sim"},
    "cancel": {"en": "Go back", "sv": "Tillbaka", "pt": "Voltar"},
    "pending": {
        "en": "Not sent yet: no connection. It is kept on this phone and sent when the connection is back.",
        "sv": "Inte skickat än: ingen anslutning. Det sparas i telefonen och skickas när anslutningen är tillbaka.",
        "pt": "Ainda não enviado: sem ligação. Fica guardado no telemóvel e é enviado quando a ligação voltar.",
    },
    "sent_later": {"en": "Sent.", "sv": "Skickat.", "pt": "Enviado."},
    "reason_needed": {
        "en": "Write why you reject it.",
        "sv": "Skriv varför du avvisar den.",
        "pt": "Escreva porque a rejeita.",
    },
    "not_now": {
        "en": "That cannot be done now: the work order has changed. The page shows where it stands.",
        "sv": "Det går inte nu: arbetsordern har ändrats. Sidan visar hur det ser ut nu.",
        "pt": "Não é possível agora: a ordem de trabalho mudou. A página mostra o estado atual.",
    },
    "accept_first": {
        "en": "Accept the work order before marking it done.",
        "sv": "Acceptera arbetsordern innan du markerar den som klar.",
        "pt": "Aceite a ordem de trabalho antes de a marcar como concluída.",
    },
    "gone": {
        "en": "That work order is no longer yours.",
        "sv": "Arbetsordern är inte längre er.",
        "pt": "Essa ordem de trabalho já não é vossa.",
    },
    "signed_in_as": {"en": "Signed in as", "sv": "Inloggad som", "pt": "Sessão de"},
    # the citizens' report page
    "report_title": {"en": "Report a fault", "sv": "Anmäl ett fel", "pt": "Participar uma avaria"},
    "where_q": {"en": "Where is it?", "sv": "Var är det?", "pt": "Onde é?"},
    "tap_map": {
        "en": "Tap the map where the fault is, or use your position.",
        "sv": "Tryck på kartan där felet är, eller använd din position.",
        "pt": "Toque no mapa onde está a avaria, ou use a sua posição.",
    },
    "use_position": {"en": "Use my position", "sv": "Använd min position", "pt": "Usar a minha posição"},
    "position_failed": {
        "en": "Your position could not be found: tap the map or write the address.",
        "sv": "Din position kunde inte hittas: tryck på kartan eller skriv adressen.",
        "pt": "Não foi possível obter a sua posição: toque no mapa ou escreva a morada.",
    },
    "lat": {"en": "Latitude", "sv": "Latitud", "pt": "Latitude"},
    "lon": {"en": "Longitude", "sv": "Longitud", "pt": "Longitude"},
    "address_label": {
        "en": "Address or place (when there is no position)",
        "sv": "Adress eller plats (om position saknas)",
        "pt": "Morada ou local (sem posição)",
    },
    "what_q": {"en": "What is wrong?", "sv": "Vad är fel?", "pt": "O que se passa?"},
    "describe": {"en": "Describe it (optional)", "sv": "Beskriv felet (frivilligt)", "pt": "Descreva (opcional)"},
    "photos_label": {
        "en": "Photos (up to 3: JPEG, PNG or WebP, at most 8 MB each)",
        "sv": "Foton (högst 3: JPEG, PNG eller WebP, högst 8 MB var)",
        "pt": "Fotografias (até 3: JPEG, PNG ou WebP, até 8 MB cada)",
    },
    "too_many_photos": {"en": "At most 3 photos.", "sv": "Högst 3 foton.", "pt": "No máximo 3 fotografias."},
    "email_label": {
        "en": "E-mail for updates (optional)",
        "sv": "E-post för besked (frivilligt)",
        "pt": "E-mail para notícias (opcional)",
    },
    "email_hint": {
        "en": "Used only to tell you what happens with your report. Names and phone numbers are not needed.",
        "sv": "Används bara för att berätta vad som händer med din anmälan. Namn och telefonnummer behövs inte.",
        "pt": "Usado só para lhe dizer o que acontece à participação. Nome e telefone não são precisos.",
    },
    "send": {"en": "Send report", "sv": "Skicka anmälan", "pt": "Enviar participação"},
    "thanks": {
        "en": "Thank you! Your report was received.",
        "sv": "Tack! Din anmälan har tagits emot.",
        "pt": "Obrigado! A sua participação foi recebida.",
    },
    "report_n": {"en": "Report #{id}", "sv": "Anmälan #{id}", "pt": "Participação #{id}"},
    "reported": {"en": "Reported", "sv": "Anmäld", "pt": "Participada"},
    "expected": {"en": "Expected done by", "sv": "Beräknas klart", "pt": "Previsto até"},
    "keep_link": {
        "en": "Keep this page's address to follow your report.",
        "sv": "Spara sidans adress för att följa din anmälan.",
        "pt": "Guarde o endereço desta página para acompanhar a participação.",
    },
    "still_broken_q": {"en": "Is it still broken?", "sv": "Är det fortfarande trasigt?", "pt": "Continua avariado?"},
    "still_broken": {"en": "It is still broken", "sv": "Det är fortfarande trasigt", "pt": "Continua avariado"},
    "followup": {
        "en": "Still broken (follow-up of report #{id})",
        "sv": "Fortfarande trasigt (uppföljning av anmälan #{id})",
        "pt": "Continua avariado (seguimento da participação #{id})",
    },
    "new_report": {"en": "Report another fault", "sv": "Anmäl ett annat fel", "pt": "Participar outra avaria"},
    "choose_place": {"en": "Choose the municipality", "sv": "Välj kommun", "pt": "Escolha o município"},
}

CHANGES: dict[str, dict[str, tuple[str, str]]] = {
    # what a crew is told about a work order: (subject prefix, first line of the body)
    "assigned": {
        "en": ("", "A new work order for your crew."),
        "sv": ("", "En ny arbetsorder till ert lag."),
        "pt": ("", "Uma nova ordem de trabalho para a sua equipa."),
    },
    "updated": {
        "en": ("UPDATED", "This work order changed: more assets are affected (listed below)."),
        "sv": ("UPPDATERAD", "Arbetsordern har ändrats: fler objekt är berörda (se nedan)."),
        "pt": ("ATUALIZADA", "Esta ordem de trabalho mudou: há mais equipamentos afetados (abaixo)."),
    },
    "cancelled": {
        "en": ("CANCELLED", "This work order is CANCELLED: do not go out for it."),
        "sv": ("AVBRUTEN", "Arbetsordern är AVBRUTEN: åk inte ut för den."),
        "pt": ("CANCELADA", "Esta ordem de trabalho foi CANCELADA: não se desloque."),
    },
    "withdrawn": {
        "en": ("WITHDRAWN", "This work order has been given to another crew: do not go out for it."),
        "sv": ("ÅTERKALLAD", "Arbetsordern har gått till ett annat lag: åk inte ut för den."),
        "pt": ("RETIRADA", "Esta ordem de trabalho passou para outra equipa: não se desloque."),
    },
    "escalated": {
        "en": ("ESCALATED", "This work order is past its due time: it comes first."),
        "sv": ("ESKALERAD", "Arbetsordern är försenad: den går före annat."),
        "pt": ("ESCALADA", "Esta ordem de trabalho passou o prazo: tem prioridade."),
    },
    "reopened": {
        "en": ("REOPENED", "The repair did not hold: the case is open again."),
        "sv": ("ÅTERÖPPNAD", "Reparationen höll inte: ärendet är öppet igen."),
        "pt": ("REABERTA", "A reparação não resultou: o processo foi reaberto."),
    },
    "report": {
        "en": ("NEW REPORT", "A citizen reported this fault too (below)."),
        "sv": ("NY ANMÄLAN", "En medborgare har också anmält felet (se nedan)."),
        "pt": ("NOVA PARTICIPAÇÃO", "Um cidadão também participou esta avaria (abaixo)."),
    },
}

REOPEN_REASONS: dict[str, dict[str, str]] = {
    "came_back": {
        "en": "the fault came back after the repair",
        "sv": "felet kom tillbaka efter reparationen",
        "pt": "a avaria voltou depois da reparação",
    },
    "not_confirmed": {
        "en": "the telemetry did not confirm the repair",
        "sv": "telemetrin bekräftade inte reparationen",
        "pt": "a telemetria não confirmou a reparação",
    },
    "citizen": {
        "en": "a citizen reports it still broken",
        "sv": "en medborgare anmäler att felet finns kvar",
        "pt": "um cidadão diz que a avaria continua",
    },
}

ESCALATION = {
    "en": "due {due}; escalation level {level}",
    "sv": "skulle vara klar {due}; eskaleringsnivå {level}",
    "pt": "prazo {due}; nível de escalamento {level}",
}

CANCEL_REASONS: dict[str, dict[str, str]] = {
    "cleared": {
        "en": "the fault went away before it was repaired",
        "sv": "felet försvann innan det åtgärdades",
        "pt": "a avaria desapareceu antes da reparação",
    },
    "merged": {
        "en": "merged into case {into}",
        "sv": "sammanslaget med ärende {into}",
        "pt": "integrado no processo {into}",
    },
    "closed": {
        "en": "closed by the municipality",
        "sv": "avslutat av kommunen",
        "pt": "encerrado pelo município",
    },
}

PRIORITIES: dict[str, dict[str, str]] = {
    "immediate": {"en": "immediate", "sv": "omedelbart", "pt": "imediata"},
    "days": {"en": "within 3 days", "sv": "inom 3 dagar", "pt": "em 3 dias"},
    "month": {"en": "within a month", "sv": "inom en månad", "pt": "num mês"},
    "round": {"en": "next round", "sv": "nästa rond", "pt": "próxima ronda"},
}

STATUSES: dict[str, dict[str, str]] = {
    "new": {"en": "new", "sv": "ny", "pt": "nova"},
    "assigned": {"en": "assigned", "sv": "tilldelad", "pt": "atribuída"},
    "in_progress": {"en": "in progress", "sv": "pågår", "pt": "em curso"},
    "done": {"en": "done", "sv": "klar", "pt": "concluída"},
    "rejected": {"en": "rejected", "sv": "avvisad", "pt": "rejeitada"},
    "cancelled": {"en": "cancelled", "sv": "avbruten", "pt": "cancelada"},
    "open": {"en": "open", "sv": "öppet", "pt": "aberto"},
    "in_repair": {"en": "in repair", "sv": "under åtgärd", "pt": "em reparação"},
    "verifying": {"en": "being verified", "sv": "verifieras", "pt": "em verificação"},
    "resolved": {"en": "resolved", "sv": "åtgärdat", "pt": "resolvido"},
}


RESOLUTIONS: dict[str, dict[str, str]] = {
    # what a citizen is told about a report whose case is resolved, by how it was resolved
    "verified": {"en": "repaired", "sv": "åtgärdat", "pt": "reparado"},
    "cleared": {
        "en": "the fault is no longer there",
        "sv": "felet finns inte längre kvar",
        "pt": "a avaria já não existe",
    },
    "merged": {
        "en": "handled together with another report of the same fault",
        "sv": "hanteras tillsammans med en annan anmälan om samma fel",
        "pt": "tratado com outra participação da mesma avaria",
    },
    "closed": {"en": "closed", "sv": "avslutat", "pt": "encerrado"},
}


RECEIVED = {
    "en": "received: the municipality is looking at it",
    "sv": "mottagen: kommunen granskar anmälan",
    "pt": "recebida: o município está a analisá-la",
}


def language(code: str | None) -> str:
    return code if code in LANGUAGES else "en"


def citizen_status(
    case_status: str | None, resolution: str | None, note: str | None, lang: str, triage: str = "attached"
) -> str:
    """A report's status notes for its reporter: how its case was resolved, in the operator's words when the case
    was closed by hand or the report dismissed, or where it stands."""
    if triage == "dismissed":
        return note or RESOLUTIONS["closed"][language(lang)]
    if triage == "inbox":
        return RECEIVED[language(lang)]
    if case_status != "resolved":
        return status(case_status or "open", lang)
    if resolution == "closed" and note:
        return note
    return RESOLUTIONS.get(resolution or "", {}).get(language(lang)) or status("resolved", lang)


def word(key: str, lang: str) -> str:
    return WORDS[key][language(lang)]


def fault(code: str, lang: str) -> str:
    return FAULTS.get(code, {}).get(language(lang), code)


def priority(code: str, lang: str) -> str:
    return PRIORITIES.get(code, {}).get(language(lang), code)


def status(code: str, lang: str) -> str:
    return STATUSES.get(code, {}).get(language(lang), code)


def change(kind: str, lang: str) -> tuple[str, str]:
    """(subject prefix, first line) of a message telling a crew about a change of kind ``kind``."""
    return CHANGES.get(kind, CHANGES["assigned"])[language(lang)]


def cancel_reason(reason: str, lang: str, into: int | None = None, note: str | None = None) -> str:
    """Why a work order was cancelled, with the operator's note when there is one."""
    text = CANCEL_REASONS.get(reason, {}).get(language(lang), reason).format(into=into)
    return f"{text}: {note}" if note else text


def work_order_title(fault_code: str, asset_id: str, place: str | None, lang: str) -> str:
    where = f" ({place})" if place else ""
    return f"{fault(fault_code, lang)}: {asset_id}{where}"
