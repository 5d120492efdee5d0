"""Drives a running medalign server with the official `openai` client: chat (whole and
streamed, with usage), text completions, model listing, and an error surfacing as the
client's exception. Usage: openai_client.py BASE_URL MODEL. Exits non-zero on any failure."""

import sys

import openai

base_url, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key="unused")

assert [m.id for m in client.models.list().data] == [model]

r = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "hello"}], max_tokens=8, temperature=0
)
whole = r.choices[0].message.content
assert r.object == "chat.completion" and r.choices[0].finish_reason in ("stop", "length"), r
assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r.usage

parts, usage = [], None
for chunk in client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "hello"}],
    max_tokens=8,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        parts.append(c.delta.content or "")
assert "".join(parts) == whole, ("".join(parts), whole)
assert usage is not None and usage.completion_tokens == r.usage.completion_tokens, usage

c = client.completions.create(model=model, prompt="the patient", max_tokens=5, temperature=0)
assert c.object == "text_completion" and isinstance(c.choices[0].text, str), c

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    raise SystemExit("unknown model was accepted")
except openai.NotFoundError as e:
    assert e.status_code == 404

try:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], temperature=9)
    raise SystemExit("temperature 9 was accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400

print("openai client: ok")
