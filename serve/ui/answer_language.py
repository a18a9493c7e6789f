"""The "answer in" picker's data: an instruction per language, written in that language, and the
example prompts the UI offers (one per script it must render well).

Small models follow "answer in Bengali" far better when the instruction itself is written in
Bengali, so each instruction is in its own language. Language codes and names come from the one
table in :mod:`crossling.languages`; this module holds UI strings only, no logic beyond lookups.
"""

from __future__ import annotations

from crossling import languages

AUTO = "auto"  # answer in the language of the user's message (detected)
NONE = "none"  # add no instruction: the model decides

# "Please answer in <language>." in <language>, for every language crossling knows.
INSTRUCTIONS: dict[str, str] = {
    "en": "Please answer in English.",
    "de": "Bitte antworte auf Deutsch.",
    "fr": "Réponds en français, s'il te plaît.",
    "es": "Responde en español, por favor.",
    "it": "Rispondi in italiano, per favore.",
    "pt": "Responda em português, por favor.",
    "nl": "Antwoord alsjeblieft in het Nederlands.",
    "ru": "Пожалуйста, отвечай на русском языке.",
    "zh": "请用中文回答。",
    "ja": "日本語で答えてください。",
    "pl": "Proszę, odpowiadaj po polsku.",
    "uk": "Будь ласка, відповідай українською мовою.",
    "tr": "Lütfen Türkçe cevap ver.",
    "ko": "한국어로 답해 주세요.",
    "ar": "من فضلك أجب باللغة العربية.",
    "vi": "Vui lòng trả lời bằng tiếng Việt.",
    "id": "Tolong jawab dalam bahasa Indonesia.",
    "th": "กรุณาตอบเป็นภาษาไทย",
    "hi": "कृपया हिंदी में उत्तर दें।",
    "bn": "অনুগ্রহ করে বাংলায় উত্তর দিন।",
    "te": "దయచేసి తెలుగులో సమాధానం ఇవ్వండి.",
    "sw": "Tafadhali jibu kwa Kiswahili.",
    "jv": "Tulung wangsulana nganggo basa Jawa.",
    "yo": "Jọ̀wọ́ dáhùn ní èdè Yorùbá.",
    "ha": "Don Allah ka amsa da harshen Hausa.",
    "am": "እባክዎ በአማርኛ ይመልሱ።",
}

# (label shown on the card, prompt): Latin, Cyrillic, Arabic (RTL), Devanagari, Bengali, Thai, CJK.
EXAMPLES: list[tuple[str, str]] = [
    ("Español", "¿Cuál es la capital de Francia y por qué es famosa?"),
    ("Русский", "Объясни простыми словами, что такое фотосинтез."),
    ("العربية", "اكتب قصيدة قصيرة عن البحر."),
    ("हिन्दी", "मुझे स्वस्थ नाश्ते के तीन विचार दो।"),
    ("বাংলা", "আমাকে একটি ছোট গল্প বলো।"),
    ("ไทย", "ช่วยแนะนำสถานที่ท่องเที่ยวในเชียงใหม่หน่อย"),
    ("中文", "请用三句话介绍一下长城。"),
    ("日本語", "日本の四季について短く説明してください。"),
    ("Kiswahili", "Nieleze kwa ufupi historia ya Mlima Kilimanjaro."),
]


def instruction(lang: str) -> str:
    """The "answer in ``lang``" instruction, written in ``lang``; a clear error for unknown codes."""
    code = languages.get(lang).code
    if code not in INSTRUCTIONS:
        raise languages.UnknownLanguageError(f"no answer-language instruction for {lang!r}")
    return INSTRUCTIONS[code]


def choices() -> list[tuple[str, str]]:
    """Dropdown choices ``(label, value)``: auto, none, then every language as "native — English"."""
    out = [("Auto — same language as my message", AUTO), ("Model decides (no instruction)", NONE)]
    for code, lang in languages.LANGUAGES.items():
        if code in INSTRUCTIONS:
            label = lang.native if lang.native == lang.name else f"{lang.native} — {lang.name}"
            out.append((label, code))
    return out
