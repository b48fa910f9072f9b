"""Deterministic assistant answers for the emulated LLM and omni models.

A fixed rule table keyed on the last user utterance: the same question always gets the same
answer, so demos are repeatable and tests can assert on what was said. Answers are several
sentences long so that streaming, sentence splitting and barge-in have something to chew on.
"""

from __future__ import annotations

import re

_RULES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"\b(hello|hi|hey|good (morning|afternoon|evening))\b|你好|您好"),
        "Hello! I am the emulated assistant, running entirely on this machine. "
        "You can ask me about the weather, the time, or for a joke. "
        "How can I help you today?",
    ),
    (
        re.compile(r"\bweather\b|\bforecast\b|\brain\b|天气"),
        "Today it is sunny with a few clouds and a gentle breeze. "
        "The temperature is about twenty two degrees in the afternoon. "
        "It should stay dry until the evening, so no umbrella is needed.",
    ),
    (
        re.compile(r"\btime\b|\bclock\b|几点|时间"),
        "I am only an emulator, so I do not have a real clock to look at. "
        "Your device can tell you the exact time much better than I can. "
        "Is there anything else I can do for you?",
    ),
    (
        re.compile(r"\bjoke\b|\bfunny\b|笑话"),
        "Why did the microphone go to school? "
        "Because it wanted to pick up a few new sounds. "
        "I hope that made you smile a little.",
    ),
    (
        re.compile(r"\b(bye|goodbye|see you)\b|再见"),
        "Goodbye! It was nice talking to you. Just speak up again whenever you need me.",
    ),
    (
        re.compile(r"\b(thanks|thank you)\b|谢谢"),
        "You are very welcome. I am glad I could help. Let me know if there is anything else.",
    ),
]

_MAX_ECHO_WORDS = 12


def answer_for(text: str) -> str:
    """The assistant's answer to `text` (the last user utterance); always ≥ 2 sentences."""
    normalized = " ".join(text.lower().split())
    for pattern, answer in _RULES:
        if pattern.search(normalized):
            return answer
    words = re.sub(r"[^\w\s'-]", " ", text).split()
    if not words:
        return "I did not catch that. Could you please say it again? I am listening."
    topic = " ".join(words[:_MAX_ECHO_WORDS])
    topic = topic[0].lower() + topic[1:]
    return (
        f"You asked about {topic}. "
        "That is an interesting question, and I am only an emulator, so my knowledge is limited. "
        "In the real service a large language model would give you a detailed answer here."
    )


def tokens_of(text: str) -> list[str]:
    """Split an answer into stream tokens: words with their trailing space or punctuation."""
    return re.findall(r"\S+\s*", text) or ([text] if text else [])


def count_tokens(text: str) -> int:
    """A rough token count (words) for usage figures."""
    return len(text.split())
