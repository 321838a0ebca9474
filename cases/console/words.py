"""The console's words in English, Swedish and Portuguese (the tenant's language)."""

from __future__ import annotations

from cases import texts

WORDS: dict[str, dict[str, str]] = {
    "console": {"en": "Console", "sv": "Driftkonsol", "pt": "Consola"},
    "sign_in": {"en": "Sign in", "sv": "Logga in", "pt": "Entrar"},
    "sign_out": {"en": "Sign out", "sv": "Logga ut", "pt": "Sair"},
    "email": {"en": "E-mail", "sv": "E-post", "pt": "E-mail"},
    "password": {"en": "Password", "sv": "Lösenord", "pt": "Palavra-passe"},
    "bad_login": {
        "en": "Wrong e-mail or password.",
        "sv": "Fel e-post eller lösenord.",
        "pt": "E-mail ou palavra-passe errados.",
    },
    "signed_out": {"en": "You are signed out.", "sv": "Du är utloggad.", "pt": "Sessão terminada."},
    "municipality": {"en": "Municipality", "sv": "Kommun", "pt": "Município"},
    "switch": {"en": "Switch", "sv": "Byt", "pt": "Mudar"},
    "inbox": {"en": "Inbox", "sv": "Inkorg", "pt": "Entrada"},
    "cases": {"en": "Cases", "sv": "Ärenden", "pt": "Processos"},
    "crews": {"en": "Crews", "sv": "Arbetslag", "pt": "Equipas"},
    "assets": {"en": "Assets", "sv": "Objekt", "pt": "Equipamentos"},
    "reports_waiting": {
        "en": "Citizen reports waiting for triage",
        "sv": "Medborgaranmälningar att granska",
        "pt": "Participações por triar",
    },
    "no_asset": {"en": "no asset near", "sv": "inget objekt i närheten", "pt": "sem equipamento perto"},
    "unrouted": {"en": "Work orders without a crew", "sv": "Arbetsordrar utan lag", "pt": "Ordens sem equipa"},
    "overdue": {"en": "Cases past their due time", "sv": "Försenade ärenden", "pt": "Processos fora de prazo"},
    "reopened": {
        "en": "Reopened after a repair that did not hold",
        "sv": "Återöppnade efter reparation som inte höll",
        "pt": "Reabertos após reparação sem efeito",
    },
    "failing": {
        "en": "Messages that keep failing", "sv": "Meddelanden som inte går fram", "pt": "Mensagens que falham"
    },
    "nothing": {"en": "Nothing here.", "sv": "Inget här.", "pt": "Nada aqui."},
    "attach": {"en": "Attach", "sv": "Koppla", "pt": "Associar"},
    "attach_to": {
        "en": "Asset id or case number", "sv": "Objekt-id eller ärendenummer", "pt": "Equipamento ou processo"
    },
    "dismiss": {"en": "Dismiss", "sv": "Avfärda", "pt": "Arquivar"},
    "note_reporter": {
        "en": "Note to the reporter",
        "sv": "Besked till anmälaren",
        "pt": "Nota para o participante",
    },
    "assign": {"en": "Assign", "sv": "Tilldela", "pt": "Atribuir"},
    "crew": {"en": "Crew", "sv": "Lag", "pt": "Equipa"},
    "retry": {"en": "Try again", "sv": "Försök igen", "pt": "Tentar de novo"},
    "attempts": {"en": "attempts", "sv": "försök", "pt": "tentativas"},
    "filter": {"en": "Filter", "sv": "Filtrera", "pt": "Filtrar"},
    "any": {"en": "any", "sv": "alla", "pt": "todos"},
    "none_crew": {"en": "no crew", "sv": "inget lag", "pt": "sem equipa"},
    "fault": {"en": "Fault", "sv": "Fel", "pt": "Avaria"},
    "priority": {"en": "Priority", "sv": "Prioritet", "pt": "Prioridade"},
    "status": {"en": "Status", "sv": "Status", "pt": "Estado"},
    "area": {"en": "Area", "sv": "Område", "pt": "Área"},
    "source": {"en": "Source", "sv": "Källa", "pt": "Origem"},
    "breached": {"en": "Past due", "sv": "Försenad", "pt": "Fora de prazo"},
    "yes": {"en": "yes", "sv": "ja", "pt": "sim"},
    "no": {"en": "no", "sv": "nej", "pt": "não"},
    "active": {"en": "active", "sv": "aktiva", "pt": "ativos"},
    "telemetry": {"en": "sensor", "sv": "sensor", "pt": "sensor"},
    "citizen": {"en": "citizen", "sv": "medborgare", "pt": "cidadão"},
    "operator": {"en": "operator", "sv": "handläggare", "pt": "operador"},
    "case": {"en": "Case", "sv": "Ärende", "pt": "Processo"},
    "asset": {"en": "Asset", "sv": "Objekt", "pt": "Equipamento"},
    "due": {"en": "Due", "sv": "Senast", "pt": "Prazo"},
    "opened": {"en": "Opened", "sv": "Öppnat", "pt": "Aberto"},
    "place": {"en": "Place", "sv": "Plats", "pt": "Local"},
    "shown": {"en": "{n} of {total}", "sv": "{n} av {total}", "pt": "{n} de {total}"},
    "previous": {"en": "Previous", "sv": "Föregående", "pt": "Anterior"},
    "next": {"en": "Next", "sv": "Nästa", "pt": "Seguinte"},
    "export": {"en": "Export", "sv": "Exportera", "pt": "Exportar"},
    "map": {"en": "Map", "sv": "Karta", "pt": "Mapa"},
    "timeline": {"en": "Timeline", "sv": "Händelser", "pt": "Cronologia"},
    "readings": {
        "en": "Readings around the finding", "sv": "Mätvärden kring felet", "pt": "Leituras em torno da avaria"
    },
    "in_grafana": {"en": "Open in Grafana", "sv": "Öppna i Grafana", "pt": "Abrir no Grafana"},
    "actions": {"en": "Actions", "sv": "Åtgärder", "pt": "Ações"},
    "merge_into": {"en": "Merge into case number", "sv": "Slå ihop med ärende nummer", "pt": "Juntar ao processo"},
    "merge": {"en": "Merge", "sv": "Slå ihop", "pt": "Juntar"},
    "close_note": {
        "en": "Close, with a note the reporters read",
        "sv": "Avsluta, med ett besked som anmälarna läser",
        "pt": "Encerrar, com uma nota para os participantes",
    },
    "close": {"en": "Close", "sv": "Avsluta", "pt": "Encerrar"},
    "reopen_note": {"en": "Reopen: why", "sv": "Öppna igen: varför", "pt": "Reabrir: porquê"},
    "reopen": {"en": "Reopen", "sv": "Öppna igen", "pt": "Reabrir"},
    "add_note": {"en": "Note", "sv": "Anteckning", "pt": "Nota"},
    "save": {"en": "Save", "sv": "Spara", "pt": "Guardar"},
    "saved": {"en": "Saved.", "sv": "Sparat.", "pt": "Guardado."},
    "add_crew": {"en": "Add a crew", "sv": "Lägg till lag", "pt": "Adicionar equipa"},
    "crew_id": {"en": "Crew id", "sv": "Lag-id", "pt": "Id da equipa"},
    "name": {"en": "Name", "sv": "Namn", "pt": "Nome"},
    "areas": {"en": "Areas (comma-separated; empty: all)", "sv": "Områden (kommaseparerade; tomt: alla)",
              "pt": "Áreas (separadas por vírgulas; vazio: todas)"},
    "skills": {"en": "Skills (comma-separated; empty: any work)", "sv": "Kompetenser (kommaseparerade; tomt: allt)",
               "pt": "Competências (separadas por vírgulas; vazio: tudo)"},
    "webhook": {"en": "Webhook address", "sv": "Webhook-adress", "pt": "Endereço do webhook"},
    "webhook_secret": {"en": "Webhook secret (empty: keep)", "sv": "Webhook-hemlighet (tomt: behåll)",
                       "pt": "Segredo do webhook (vazio: manter)"},
    "crew_active": {"en": "Active", "sv": "Aktivt", "pt": "Ativa"},
    "edit": {"en": "Edit", "sv": "Ändra", "pt": "Editar"},
    "search": {"en": "Search by id or address", "sv": "Sök på id eller adress", "pt": "Procurar por id ou morada"},
    "find": {"en": "Find", "sv": "Sök", "pt": "Procurar"},
    "active_cases": {"en": "active cases", "sv": "aktiva ärenden", "pt": "processos ativos"},
    "work_orders": {"en": "Work orders", "sv": "Arbetsordrar", "pt": "Ordens de trabalho"},
    "reports": {"en": "Citizen reports", "sv": "Medborgaranmälningar", "pt": "Participações"},
    "findings": {"en": "Findings", "sv": "Fynd", "pt": "Deteções"},
    "no_readings": {"en": "No readings in this window.", "sv": "Inga mätvärden i detta fönster.",
                    "pt": "Sem leituras neste intervalo."},
}  # fmt: skip

REFUSED: dict[str, dict[str, str]] = {
    # what an operator is told when a decision does not fit (CasesError.code), with its params
    "case_gone": {"en": "Case {case} is not an active case of this municipality.",
                  "sv": "Ärende {case} är inget aktivt ärende i kommunen.",
                  "pt": "O processo {case} não é um processo ativo deste município."},
    "no_crew": {"en": "Crew {crew} does not exist or is inactive.", "sv": "Laget {crew} finns inte eller är inaktivt.",
                "pt": "A equipa {crew} não existe ou está inativa."},
    "skill": {"en": "Crew {crew} does not do {skill} work, which this fault needs.",
              "sv": "Laget {crew} utför inte {skill}-arbete, som felet kräver.",
              "pt": "A equipa {crew} não faz trabalho de {skill}, que esta avaria exige."},
    "resolved": {"en": "Case {case} is already resolved.", "sv": "Ärende {case} är redan avslutat.",
                 "pt": "O processo {case} já está resolvido."},
    "not_resolved": {"en": "Case {case} is not resolved.", "sv": "Ärende {case} är inte avslutat.",
                     "pt": "O processo {case} não está resolvido."},
    "note_needed": {"en": "Write a note: it is read by the people concerned.",
                    "sv": "Skriv ett besked: de berörda läser det.",
                    "pt": "Escreva uma nota: as pessoas envolvidas vão lê-la."},
    "merge_other": {"en": "Merge into another case of this municipality.",
                    "sv": "Slå ihop med ett annat ärende i kommunen.",
                    "pt": "Junte a outro processo deste município."},
    "merge_active": {"en": "Both cases must be active to be merged.", "sv": "Båda ärendena måste vara aktiva.",
                     "pt": "Ambos os processos têm de estar ativos."},
    "active_exists": {"en": "{asset} already has an active case for this fault: work that one.",
                      "sv": "{asset} har redan ett aktivt ärende för felet: arbeta med det.",
                      "pt": "{asset} já tem um processo ativo para esta avaria: trabalhe nesse."},
    "no_asset": {"en": "There is no asset {asset} in this municipality.",
                 "sv": "Objektet {asset} finns inte i kommunen.",
                 "pt": "Não existe o equipamento {asset} neste município."},
    "report_done": {"en": "Report {report} has already been handled.", "sv": "Anmälan {report} är redan hanterad.",
                    "pt": "A participação {report} já foi tratada."},
    "bad_email": {"en": "{email} is not an e-mail address.", "sv": "{email} är ingen e-postadress.",
                  "pt": "{email} não é um endereço de e-mail."},
    "bad_webhook": {"en": "The webhook address must start with http:// or https://.",
                    "sv": "Webhook-adressen måste börja med http:// eller https://.",
                    "pt": "O endereço do webhook tem de começar por http:// ou https://."},
    "webhook_secret": {"en": "A webhook needs a secret: its messages are signed.",
                       "sv": "En webhook behöver en hemlighet: meddelandena signeras.",
                       "pt": "Um webhook precisa de um segredo: as mensagens são assinadas."},
}  # fmt: skip


def refused(exc: Exception, lang: str) -> str:
    """Why a decision was refused, in ``lang`` when lykta knows the refusal; else its own words."""
    code = getattr(exc, "code", None)
    params = getattr(exc, "params", {})
    by_language = REFUSED.get(code or "")
    if by_language is None:
        return str(exc)
    try:
        return by_language[texts.language(lang)].format(**params)
    except (KeyError, IndexError):
        return str(exc)


def words(lang: str) -> dict[str, str]:
    """The console's words and the shared ones (statuses, faults stay with texts)."""
    lang = texts.language(lang)
    shared = {k: texts.word(k, lang) for k in texts.WORDS}
    return {**shared, **{k: v[lang] for k, v in WORDS.items()}}
