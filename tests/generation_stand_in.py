"""A deterministic generator for the stand-in chat server (`tests/chat_stand_in.py`): what a documents, variations,
teacher or judge call of a generation job gets back, with planted trouble for the filters to catch.

In an excerpt, a sentence holding `MALFORMED` makes the whole answer prose without JSON; `DUPLICATE-ME` makes its
pair twice; `REFUSE` a refusal; `SHORT` a too-short answer. An e-mail address in a sentence stays in its answer
(personal data). A judge scores 3 an answer holding `LOW QUALITY`, else 9.
"""

import json
import re

JUDGE_MARK = "You grade one example of training data"


def generator_answer(body: dict) -> str:
    messages = body["messages"]
    first = messages[0]["content"] if messages else ""
    last = messages[-1]["content"] if messages else ""
    if JUDGE_MARK in first:
        return "The answer is fine.\nScore: 3" if "LOW QUALITY" in last else "Clear and correct.\nScore: 9"
    if "<excerpt>" in last:
        return _pairs(last)
    if "<request>" in last:
        return _variations(last)
    return f"Teacher's answer, worked through step by step: {last}"


def _pairs(prompt: str) -> str:
    excerpt = prompt.split("<excerpt>", 1)[1].split("</excerpt>", 1)[0]
    n = int(re.search(r"Write (\d+) different questions", prompt)[1])  # type: ignore[index]
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", excerpt) if len(s.strip()) > 10 and "#" not in s]
    if any("MALFORMED" in s for s in sentences):
        return "Here are the pairs you asked for: question one, answer one."
    pairs = []
    for sentence in sentences[:n]:
        words = " ".join(sentence.split()[:6])
        answer = sentence
        if "REFUSE" in sentence:
            answer = "I'm sorry, but I can't help with that request."
        elif "SHORT" in sentence:
            answer = "Yes."
        pairs.append({"question": f"What does the guide say about {words}?", "answer": answer})
        if "DUPLICATE-ME" in sentence:
            pairs.append(dict(pairs[-1]))
    return "```json\n" + json.dumps({"pairs": pairs}) + "\n```"


def _variations(prompt: str) -> str:
    request = prompt.split("<request>", 1)[1].split("</request>", 1)[0].strip()
    n = int(re.search(r"Write (\d+) new requests", prompt)[1])  # type: ignore[index]
    style = re.search(r"that are (.+?) of it\.", prompt, re.DOTALL)[1]  # type: ignore[index]
    found = [f"Variant {i + 1} ({style.split(' (')[0]}) of: {request}" for i in range(n)]
    if "DUPLICATE-ME" in request and found:
        found.append(found[0])
    return json.dumps({"prompts": found})
