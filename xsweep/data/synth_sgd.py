"""Demo dialogues in the SGD layout with XSGD's `utterance_<code>` fields (see synth.py).

A handful of services written for this project (not SGD's), each dialogue following one script:
an optional greeting with no active intent (kept for out-of-scope evaluation), a request that
informs the intent, a system question, the answer, the result, and for GetAlarms an offered second
intent the user accepts; then thanks and goodbye. Every turn is rendered in all demo languages from
one template tuple, like XSGD's translations.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from xsweep.data.synth_templates import FILLERS, LANGS
from xsweep.languages import MASSIVE_TO_XSGD

_PLACEHOLDER = re.compile(r"\{(\w+)(?::(\w+))?\}")
# SGD slot name -> filler table of synth_templates.
SLOT_FILLER = {"alarm_time": "time", "city": "place_name", "date": "date",
               "destination": "place_name", "pickup_time": "time", "artist": "artist_name",
               "genre": "music_genre"}
DIALOGUES_PER_SERVICE = {"train": 6, "dev": 3, "test": 3}

# service, description, slots (name, description), intents (name, description, transactional,
# required slots)
SERVICES = [
    ("Alarm_1", "Keep track of the alarms on the user's phone",
     [("alarm_time", "Time at which the alarm rings")],
     [("GetAlarms", "List the alarms the user has already set", False, []),
      ("AddAlarm", "Create a new alarm for a given time", True, ["alarm_time"])]),
    ("Weather_1", "Look up weather forecasts for cities",
     [("city", "City the forecast is for"), ("date", "Day the forecast is for")],
     [("GetWeather", "Get the weather forecast for a city on some day", False, ["city"])]),
    ("RideSharing_1", "Book cabs to take the user somewhere",
     [("destination", "Place the ride goes to"), ("pickup_time", "Time the car picks the user up")],
     [("GetRide", "Book a cab ride to a destination", True, ["destination", "pickup_time"])]),
    ("Music_1", "Play music on the user's speakers",
     [("artist", "Performer of the song"), ("genre", "Style of the music")],
     [("PlaySong", "Play a song by an artist or in a genre", True, ["artist"])]),
]

T = tuple[str, ...]
GREET_USER: T = ("Hi, could you help me with something?", "Hallo, kannst du mir bei etwas helfen?",
                 "Hola, ¿me puedes ayudar con algo?", "Привет, можешь мне кое с чем помочь?",
                 "こんにちは、ちょっと手伝ってくれますか?")
GREET_SYSTEM: T = ("Of course, what do you need?", "Natürlich, was brauchst du?",
                   "Claro, ¿qué necesitas?", "Конечно, что вам нужно?", "もちろんです、何が必要ですか?")
THANKS_USER: T = ("Thanks, that's all I needed.", "Danke, das war alles.", "Gracias, eso es todo.",
                  "Спасибо, это всё.", "ありがとう、以上です。")
BYE_SYSTEM: T = ("You're welcome, have a nice day.", "Gern geschehen, schönen Tag noch.",
                 "De nada, que tengas un buen día.", "Пожалуйста, хорошего дня.",
                 "どういたしまして、良い一日を。")

# intent -> open (user requests), ask (system question, slot asked), answer (user), result (system),
# offer (optional: system offers an intent, user accepts with a slot, system confirms)
SCRIPTS: dict[str, dict] = {
    "AddAlarm": {
        "open": [("Please set an alarm for {alarm_time}.", "Bitte stell einen Wecker für {alarm_time}.",
                  "Pon una alarma para {alarm_time}, por favor.", "Поставь будильник на {alarm_time}, пожалуйста.",
                  "{alarm_time}にアラームをセットしてください。"),
                 ("I want a new alarm at {alarm_time}.", "Ich will einen neuen Wecker um {alarm_time}.",
                  "Quiero una alarma nueva a {alarm_time}.", "Мне нужен новый будильник на {alarm_time}.",
                  "{alarm_time}に新しいアラームが欲しいです。")],
        "ask": None,
        "result": ("Done, your alarm is set.", "Erledigt, dein Wecker ist gestellt.",
                   "Hecho, tu alarma está puesta.", "Готово, будильник поставлен.",
                   "完了です、アラームをセットしました。"),
    },
    "GetAlarms": {
        "open": [("Can you show me my alarms?", "Kannst du mir meine Wecker zeigen?",
                  "¿Me enseñas mis alarmas?", "Покажешь мои будильники?", "アラームを見せてくれますか?"),
                 ("Which alarms have I set?", "Welche Wecker habe ich gestellt?",
                  "¿Qué alarmas tengo puestas?", "Какие будильники я поставил?",
                  "どのアラームをセットしましたか?")],
        "ask": None,
        "offer": ("AddAlarm",
                  ("You have one alarm. Would you like to add another one?",
                   "Du hast einen Wecker. Möchtest du noch einen hinzufügen?",
                   "Tienes una alarma. ¿Quieres añadir otra?",
                   "У вас один будильник. Хотите добавить ещё один?",
                   "アラームが一つあります。もう一つ追加しますか?"),
                  ("Yes, add one at {alarm_time}.", "Ja, füge einen um {alarm_time} hinzu.",
                   "Sí, añade una a {alarm_time}.", "Да, добавь на {alarm_time}.",
                   "はい、{alarm_time}に追加して。")),
        "result": ("Done, your new alarm is set.", "Erledigt, dein neuer Wecker ist gestellt.",
                   "Hecho, tu nueva alarma está puesta.", "Готово, новый будильник поставлен.",
                   "完了です、新しいアラームをセットしました。"),
    },
    "GetWeather": {
        "open": [("What's the weather going to be like {date}?", "Wie wird das Wetter {date}?",
                  "¿Qué tiempo hará {date}?", "Какая погода будет {date}?", "{date}の天気はどうなりますか?"),
                 ("I'd like to check the forecast for {date}.", "Ich möchte die Vorhersage für {date} sehen.",
                  "Quiero consultar el pronóstico para {date}.", "Я хочу узнать прогноз на {date}.",
                  "{date}の予報を確認したいです。")],
        "ask": (("Which city should I check?", "Für welche Stadt soll ich nachsehen?",
                 "¿Qué ciudad consulto?", "Какой город проверить?", "どの都市を調べますか?"), "city"),
        "answer": ("In {city}, please.", "In {city}, bitte.", "En {city}, por favor.",
                   "В {city:loc}, пожалуйста.", "{city}でお願いします。"),
        "result": ("It should be sunny and warm.", "Es wird sonnig und warm.",
                   "Estará soleado y hará calor.", "Будет солнечно и тепло.", "晴れて暖かくなりそうです。"),
    },
    "GetRide": {
        "open": [("I need a ride to {destination}.", "Ich brauche eine Fahrt nach {destination}.",
                  "Necesito un viaje a {destination}.", "Мне нужно доехать до {destination:gen}.",
                  "{destination}まで乗せてほしいです。"),
                 ("Can you get me a cab to {destination}?", "Kannst du mir ein Taxi nach {destination} besorgen?",
                  "¿Me pides un taxi a {destination}?", "Можешь вызвать мне такси до {destination:gen}?",
                  "{destination}までタクシーを呼んでくれますか?")],
        "ask": (("When should the car pick you up?", "Wann soll dich das Auto abholen?",
                 "¿A qué hora te recoge el coche?", "Когда машине вас забрать?",
                 "車は何時に迎えに行けばいいですか?"), "pickup_time"),
        "answer": ("At {pickup_time}, please.", "Um {pickup_time}, bitte.", "A {pickup_time}, por favor.",
                   "В {pickup_time}, пожалуйста.", "{pickup_time}にお願いします。"),
        "result": ("Your ride is booked.", "Deine Fahrt ist gebucht.", "Tu viaje está reservado.",
                   "Поездка заказана.", "乗車を予約しました。"),
    },
    "PlaySong": {
        "open": [("I want to hear something by {artist}.", "Ich möchte etwas von {artist} hören.",
                  "Quiero escuchar algo de {artist}.", "Хочу послушать что-нибудь {artist:gen}.",
                  "{artist}の曲が聴きたいです。"),
                 ("Play a song by {artist} for me.", "Spiel mir ein Lied von {artist}.",
                  "Ponme una canción de {artist}.", "Включи мне песню {artist:gen}.",
                  "{artist}の曲をかけてください。")],
        "ask": (("Which genre do you prefer?", "Welches Genre magst du lieber?",
                 "¿Qué género prefieres?", "Какой жанр вы предпочитаете?",
                 "どのジャンルがいいですか?"), "genre"),
        "answer": ("Something {genre}, please.", "Etwas {genre}, bitte.", "Algo de {genre}, por favor.",
                   "Что-нибудь {genre}, пожалуйста.", "{genre}でお願いします。"),
        "result": ("Now playing your song.", "Dein Lied läuft jetzt.", "Ya suena tu canción.",
                   "Ваша песня играет.", "曲を再生しています。"),
    },
}


def _render(template: str, lang: int, values: dict[str, int]) -> str:
    def sub(m: re.Match) -> str:
        filler = FILLERS[SLOT_FILLER[m.group(1)]][values[m.group(1)]][lang]
        return filler if isinstance(filler, str) else filler[m.group(2) or "nom"]
    return _PLACEHOLDER.sub(sub, template)


def _english_value(slot: str, values: dict[str, int]) -> str:
    return _render("{%s}" % slot, 0, values)


class _Dialogue:
    """Accumulates turns of one dialogue in every language."""

    def __init__(self, service: str, codes: list[str], values: dict[str, int]):
        self.service, self.codes, self.values = service, codes, values
        self.turns: list[dict] = []
        self.state: dict[str, list[str]] = {}

    def add(self, speaker: str, template: T, acts: list[tuple[str, str | None, list[str]]],
            active_intent: str | None = None) -> None:
        utt = _render(template[0], 0, self.values)
        slots = []
        for slot in dict.fromkeys(m.group(1) for m in _PLACEHOLDER.finditer(template[0])):
            value = _english_value(slot, self.values)
            start = utt.find(value)
            slots.append({"exclusive_end": start + len(value), "slot": slot, "start": start})
            if speaker == "USER":
                self.state[slot] = [value]
        frame: dict = {"actions": [{"act": act, "canonical_values": vals, "slot": slot or "",
                                    "values": vals} for act, slot, vals in acts],
                       "service": self.service, "slots": slots}
        if speaker == "USER":
            frame["state"] = {"active_intent": active_intent or "NONE", "requested_slots": [],
                              "slot_values": dict(self.state)}
        turn = {"frames": [frame], "speaker": speaker, "utterance": utt}
        for lang, code in enumerate(self.codes, start=1):
            turn[f"utterance_{code}"] = _render(template[lang], lang, self.values)
        self.turns.append(turn)


def _dialogue(rng: random.Random, dialogue_id: str, service: str, intent: str,
              codes: list[str]) -> dict:
    values = {slot: rng.randrange(len(FILLERS[f])) for slot, f in SLOT_FILLER.items()}
    d = _Dialogue(service, codes, values)
    script = SCRIPTS[intent]
    if rng.random() < 0.4:  # no active intent yet: an out-of-scope turn for evaluation
        d.add("USER", GREET_USER, [], None)
        d.add("SYSTEM", GREET_SYSTEM, [("REQ_MORE", None, [])])
    opening = script["open"][rng.randrange(len(script["open"]))]
    informs = [("INFORM", s, [_english_value(s, values)]) for s in _slots_in(opening)]
    d.add("USER", opening, [("INFORM_INTENT", "intent", [intent])] + informs, intent)
    if script["ask"] is not None:
        question, slot = script["ask"]
        d.add("SYSTEM", question, [("REQUEST", slot, [])])
        d.add("USER", script["answer"], [("INFORM", slot, [_english_value(slot, values)])], intent)
    if "offer" in script:
        offered, question, accept = script["offer"]
        d.add("SYSTEM", question, [("INFORM_COUNT", "count", ["1"]),
                                   ("OFFER_INTENT", "intent", [offered])])
        informs = [("INFORM", s, [_english_value(s, values)]) for s in _slots_in(accept)]
        d.add("USER", accept, [("AFFIRM_INTENT", None, [])] + informs, offered)
    d.add("SYSTEM", script["result"], [("NOTIFY_SUCCESS", None, [])])
    final_intent = script["offer"][0] if "offer" in script else intent
    d.add("USER", THANKS_USER, [("THANK_YOU", None, []), ("GOODBYE", None, [])], final_intent)
    d.add("SYSTEM", BYE_SYSTEM, [("GOODBYE", None, [])])
    return {"dialogue_id": dialogue_id, "services": [service], "turns": d.turns}


def _slots_in(template: T) -> list[str]:
    return list(dict.fromkeys(m.group(1) for m in _PLACEHOLDER.finditer(template[0])))


def schema() -> list[dict]:
    """The demo services in SGD's schema.json format."""
    out = []
    for name, description, slots, intents in SERVICES:
        out.append({
            "service_name": name, "description": description,
            "slots": [{"name": s, "description": d, "is_categorical": False, "possible_values": []}
                      for s, d in slots],
            "intents": [{"name": i, "description": d, "is_transactional": tx,
                         "required_slots": req, "optional_slots": {},
                         "result_slots": [s for s, _ in slots]} for i, d, tx, req in intents],
        })
    return out


def write_sgd(root: Path, seed: int, locales: tuple[str, ...]) -> None:
    """Write `root/{train,dev,test}/schema.json` and `dialogues_001.json` in XSGD's layout."""
    codes = [MASSIVE_TO_XSGD[loc] for loc in locales[1:]]
    assert locales[0] == "en-US" and len(locales) == len(LANGS)
    for split, per_service in DIALOGUES_PER_SERVICE.items():
        rng = random.Random(f"sgd:{seed}:{split}")
        folder = root / split
        folder.mkdir(parents=True)
        dialogues = []
        for name, _, _, intents in SERVICES:
            for k in range(per_service):
                intent = intents[k % len(intents)][0]
                dialogues.append(_dialogue(rng, "", name, intent, codes))
        rng.shuffle(dialogues)
        for i, dialogue in enumerate(dialogues):
            dialogue["dialogue_id"] = f"1_{i:05d}"
        (folder / "schema.json").write_text(
            json.dumps(schema(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (folder / "dialogues_001.json").write_text(
            json.dumps(dialogues, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
