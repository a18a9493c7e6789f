"""Refusals written in each language crossling knows, for blocked requests.

A user who writes in Swahili gets a Swahili refusal: an English refusal to a low-resource-language
prompt reads as the system not understanding, and invites rephrasing. Two texts per language: a
general one, and one for self-harm that points to help instead of only saying no.
This module is text only; choosing *when* to refuse is the filter's policy (``safety.policy``).
"""

from __future__ import annotations

from crossling.languages import get

# lang -> (general refusal, self-harm refusal)
REFUSALS: dict[str, tuple[str, str]] = {
    "en": (
        "Sorry, I can't help with that request. I'm happy to help with something else.",
        "I'm sorry you're going through this. I can't help with that, but you don't have to face it "
        "alone: please reach out to someone you trust or a local crisis line.",
    ),
    "de": (
        "Entschuldigung, bei dieser Anfrage kann ich nicht helfen. Gern helfe ich bei etwas anderem.",
        "Es tut mir leid, dass es dir so geht. Dabei kann ich nicht helfen, aber du musst das nicht "
        "allein tragen: Bitte wende dich an einen Menschen, dem du vertraust, oder an eine Krisenhotline.",
    ),
    "fr": (
        "Désolé, je ne peux pas aider avec cette demande. Je peux vous aider pour autre chose.",
        "Je suis désolé que vous traversiez cela. Je ne peux pas aider pour cela, mais vous n'êtes pas "
        "seul : parlez-en à une personne de confiance ou à une ligne d'écoute.",
    ),
    "es": (
        "Lo siento, no puedo ayudar con esa solicitud. Con gusto te ayudo con otra cosa.",
        "Siento que estés pasando por esto. No puedo ayudar con eso, pero no estás solo: habla con "
        "alguien de confianza o con una línea de ayuda en crisis.",
    ),
    "it": (
        "Mi dispiace, non posso aiutarti con questa richiesta. Posso aiutarti con qualcos'altro.",
        "Mi dispiace che tu stia passando questo momento. Non posso aiutarti in questo, ma non sei solo: "
        "parla con una persona di fiducia o con un servizio di ascolto.",
    ),
    "pt": (
        "Desculpe, não posso ajudar com esse pedido. Posso ajudar com outra coisa.",
        "Lamento que esteja passando por isso. Não posso ajudar com isso, mas você não está sozinho: "
        "procure alguém de confiança ou um serviço de apoio emocional.",
    ),
    "nl": (
        "Sorry, met dit verzoek kan ik niet helpen. Ik help je graag met iets anders.",
        "Het spijt me dat je dit doormaakt. Hiermee kan ik niet helpen, maar je staat er niet alleen "
        "voor: praat met iemand die je vertrouwt of bel een hulplijn.",
    ),
    "ru": (
        "Извините, я не могу помочь с этим запросом. С радостью помогу с чем-нибудь другим.",
        "Мне жаль, что вам сейчас так тяжело. С этим я помочь не могу, но вы не одни: обратитесь к "
        "близкому человеку или на телефон доверия.",
    ),
    "zh": (
        "抱歉，我无法帮助处理这个请求。我很乐意帮你做其他事情。",
        "很抱歉你正在经历这些。我无法在这方面提供帮助，但你并不孤单：请联系你信任的人或当地的心理援助热线。",
    ),
    "ja": (
        "申し訳ありませんが、そのご依頼にはお応えできません。ほかのことでしたら喜んでお手伝いします。",
        "つらい思いをされているのですね。その件はお手伝いできませんが、一人で抱え込まないでください。"
        "信頼できる人や相談窓口に連絡してください。",
    ),
    "pl": (
        "Przepraszam, nie mogę pomóc w tej sprawie. Chętnie pomogę w czymś innym.",
        "Przykro mi, że przez to przechodzisz. Nie mogę w tym pomóc, ale nie jesteś sam: porozmawiaj z "
        "kimś zaufanym lub zadzwoń na telefon zaufania.",
    ),
    "uk": (
        "Вибачте, я не можу допомогти з цим запитом. Радо допоможу з чимось іншим.",
        "Мені шкода, що вам зараз так важко. З цим я допомогти не можу, але ви не самі: зверніться до "
        "близької людини або на лінію психологічної підтримки.",
    ),
    "tr": (
        "Üzgünüm, bu istekte yardımcı olamam. Başka bir konuda memnuniyetle yardım ederim.",
        "Bunları yaşadığın için üzgünüm. Bu konuda yardımcı olamam ama yalnız değilsin: güvendiğin "
        "biriyle ya da bir kriz destek hattıyla konuş.",
    ),
    "ko": (
        "죄송하지만 그 요청은 도와드릴 수 없습니다. 다른 일이라면 기꺼이 돕겠습니다.",
        "힘든 시간을 보내고 계신 것 같아 마음이 아픕니다. 그 부분은 도와드릴 수 없지만 혼자가 아닙니다. "
        "믿을 수 있는 사람이나 위기 상담 전화에 연락해 주세요.",
    ),
    "ar": (
        "عذرًا، لا يمكنني المساعدة في هذا الطلب. يسعدني أن أساعدك في أمر آخر.",
        "يؤسفني أنك تمر بهذا. لا يمكنني المساعدة في ذلك، لكنك لست وحدك: تحدث إلى شخص تثق به أو اتصل "
        "بخط مساعدة للأزمات.",
    ),
    "vi": (
        "Xin lỗi, tôi không thể giúp với yêu cầu này. Tôi rất sẵn lòng giúp bạn việc khác.",
        "Tôi rất tiếc vì bạn đang trải qua điều này. Tôi không thể giúp việc đó, nhưng bạn không cô đơn: "
        "hãy nói chuyện với người bạn tin tưởng hoặc gọi đường dây hỗ trợ khủng hoảng.",
    ),
    "id": (
        "Maaf, saya tidak dapat membantu permintaan ini. Saya senang membantu hal lain.",
        "Saya turut sedih Anda mengalami ini. Saya tidak dapat membantu hal itu, tetapi Anda tidak "
        "sendirian: hubungi orang yang Anda percayai atau layanan bantuan krisis.",
    ),
    "th": (
        "ขออภัย ฉันไม่สามารถช่วยเรื่องนี้ได้ ยินดีช่วยเรื่องอื่นแทน",
        "เสียใจที่คุณต้องเผชิญเรื่องนี้ ฉันช่วยเรื่องนั้นไม่ได้ แต่คุณไม่ได้อยู่คนเดียว โปรดติดต่อคนที่คุณไว้ใจหรือสายด่วนช่วยเหลือ",
    ),
    "hi": (
        "क्षमा करें, मैं इस अनुरोध में मदद नहीं कर सकता। किसी और काम में ख़ुशी से मदद करूँगा।",
        "मुझे दुख है कि आप इससे गुज़र रहे हैं। मैं इसमें मदद नहीं कर सकता, लेकिन आप अकेले नहीं हैं: "
        "किसी भरोसेमंद व्यक्ति या संकट हेल्पलाइन से बात करें।",
    ),
    "bn": (
        "দুঃখিত, আমি এই অনুরোধে সাহায্য করতে পারব না। অন্য কোনো বিষয়ে সানন্দে সাহায্য করব।",
        "আপনি এমন কষ্টের মধ্যে আছেন জেনে আমি দুঃখিত। এ বিষয়ে আমি সাহায্য করতে পারব না, তবে আপনি একা "
        "নন: বিশ্বস্ত কারও সঙ্গে বা সংকট সহায়তা লাইনে কথা বলুন।",
    ),
    "te": (
        "క్షమించండి, ఈ అభ్యర్థనలో నేను సహాయం చేయలేను. వేరే విషయంలో సంతోషంగా సహాయం చేస్తాను.",
        "మీరు ఇలాంటి బాధలో ఉన్నందుకు చింతిస్తున్నాను. దీనిలో నేను సహాయం చేయలేను, కానీ మీరు ఒంటరి కాదు: "
        "మీరు నమ్మే వ్యక్తితో లేదా సంక్షోభ సహాయ లైన్‌తో మాట్లాడండి.",
    ),
    "sw": (
        "Samahani, siwezi kusaidia na ombi hili. Nitafurahi kukusaidia kwa jambo lingine.",
        "Pole kwa unayopitia. Siwezi kusaidia kwa hilo, lakini hauko peke yako: tafadhali zungumza na "
        "mtu unayemwamini au piga simu ya msaada wa dharura.",
    ),
    "jv": (
        "Nyuwun pangapunten, kula mboten saged mbiyantu panyuwunan menika. Kula remen mbiyantu bab sanesipun.",
        "Nyuwun pangapunten panjenengan nembe ngalami bab menika. Kula mboten saged mbiyantu, nanging "
        "panjenengan mboten piyambakan: mangga sesambetan kaliyan tiyang ingkang dipunpitados utawi "
        "layanan pitulungan krisis.",
    ),
    "yo": (
        "Má bínú, mi ò lè ṣèrànwọ́ pẹ̀lú ìbéèrè yìí. Inú mi yóò dùn láti ràn ọ́ lọ́wọ́ nínú nǹkan mìíràn.",
        "Ó dùn mí pé o ń la èyí kọjá. Mi ò lè ṣèrànwọ́ pẹ̀lú ìyẹn, ṣùgbọ́n ìwọ nìkan kọ́: jọ̀wọ́ bá ẹnì "
        "kan tí o gbẹ́kẹ̀lé sọ̀rọ̀ tàbí pe ìlà ìrànlọ́wọ́ pàjáwìrì.",
    ),
    "ha": (
        "Yi haƙuri, ba zan iya taimakawa da wannan buƙatar ba. Zan yi farin cikin taimaka maka da wani abu.",
        "Na yi baƙin ciki da kake cikin wannan hali. Ba zan iya taimakawa da hakan ba, amma ba kai kaɗai "
        "ba ne: don Allah ka yi magana da wanda ka amince da shi ko layin taimakon gaggawa.",
    ),
    "am": (
        "ይቅርታ፣ በዚህ ጥያቄ ልረዳዎ አልችልም። በሌላ ነገር ብረዳዎ ደስ ይለኛል።",
        "በዚህ ሁኔታ ውስጥ በማለፍዎ አዝናለሁ። በዚህ ልረዳዎ አልችልም፣ ነገር ግን ብቻዎን አይደሉም፤ እባክዎ ለሚያምኑት "
        "ሰው ወይም ለአስቸኳይ የእርዳታ መስመር ይደውሉ።",
    ),
}


def refusal_text(lang: str | None, category: str | None = None) -> str:
    """A refusal written in ``lang`` (a BCP-47 code; English when unknown or ``None``)."""
    code = "en"
    if lang:
        try:
            code = get(lang).code
        except ValueError:
            code = "en"
    general, self_harm = REFUSALS.get(code, REFUSALS["en"])
    return self_harm if category == "self_harm" else general
