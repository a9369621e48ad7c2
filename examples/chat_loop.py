"""A chat loop with long-term memory: search the user's memories before answering, add the turn after.

    export MEMORY_SERVICE_KEY=$(.venv/bin/python -m app status --json \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["service_role_key"])')
    .venv/bin/python examples/chat_loop.py "I am allergic to peanuts" "What should I avoid eating?"

Turns come from the arguments, else from stdin (one per line; interactive on a terminal).
Environment: MEMORY_URL (default http://127.0.0.1:8000), MEMORY_SERVICE_KEY (required),
MEMORY_USER_ID (default alice), MEMORY_TOP_K (default 5). With OPENAI_API_KEY or OPENAI_BASE_URL
set, answers come from that OpenAI-compatible chat endpoint (OPENAI_MODEL, default gpt-4o-mini);
otherwise from an offline echo that quotes the memories it used, so the loop runs with no key.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import httpx

OFFLINE = "(offline echo)"


def search_memories(memory: httpx.Client, user_id: str, query: str, top_k: int) -> list[dict[str, Any]]:
    """Step 1, before answering: the user's memories nearest in meaning to what they just said."""
    response = memory.post("/mem/v1/search", json={"query": query, "user_id": user_id, "top_k": top_k})
    response.raise_for_status()
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def build_prompt(memories: list[dict[str, Any]], user_text: str) -> list[dict[str, str]]:
    """Step 2: the memories go into the system message; the model decides which ones matter."""
    known = "\n".join(f"- {m['memory']}" for m in memories) or "(nothing yet)"
    system = (
        "You are a helpful assistant with long-term memory. What you remember about this user:\n"
        f"{known}\nUse it when it is relevant; do not mention it when it is not."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user_text}]


def answer(llm: httpx.Client | None, prompt: list[dict[str, str]], memories: list[dict[str, Any]]) -> str:
    """Step 3: an OpenAI-compatible chat completion, or the offline echo when no model is configured."""
    if llm is None:
        if not memories:
            return f"{OFFLINE} I don't remember anything relevant about you yet."
        quoted = "; ".join(f'"{m["memory"]}"' for m in memories)
        return f"{OFFLINE} Here is what I remember that may matter: {quoted}."
    model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
    response = llm.post("/chat/completions", json={"model": model, "messages": prompt})
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])


def add_turn(memory: httpx.Client, user_id: str, user_text: str, reply: str) -> list[dict[str, Any]]:
    """Step 4, after answering: the service keeps what is worth keeping (verbatim without a chat model)."""
    messages = [{"role": "user", "content": user_text}, {"role": "assistant", "content": reply}]
    response = memory.post("/mem/v1/memories", json={"messages": messages, "user_id": user_id})
    response.raise_for_status()
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def read_turns(argv: list[str]) -> Iterator[str]:
    if argv:
        yield from argv
        return
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return
        if line.strip():
            yield line.strip()


def llm_client() -> httpx.Client | None:
    key, base_url = os.environ.get("OPENAI_API_KEY"), os.environ.get("OPENAI_BASE_URL")
    if not key and not base_url:
        return None
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=base_url or "https://api.openai.com/v1", headers=headers, timeout=60)


def run_turn(memory: httpx.Client, llm: httpx.Client | None, user_id: str, text: str, top_k: int) -> None:
    print(f"you: {text}")
    memories = search_memories(memory, user_id, text, top_k)
    print(f"memories used ({len(memories)}):")
    for m in memories:
        print(f"  - {m['memory']} (score {m['score']:.2f})")
    reply = answer(llm, build_prompt(memories, text), memories)
    print(f"assistant: {reply}")
    stored = add_turn(memory, user_id, text, reply)
    print("stored: " + (", ".join(f"{r['event']} {r['memory']!r}" for r in stored) or "nothing new"))
    print(flush=True)


def main(argv: list[str]) -> int:
    service_key = os.environ.get("MEMORY_SERVICE_KEY")
    if not service_key:
        print(
            "Set MEMORY_SERVICE_KEY (`python -m app status --json` prints service_role_key).", file=sys.stderr
        )
        return 2
    base_url = os.environ.get("MEMORY_URL", "http://127.0.0.1:8000")
    user_id = os.environ.get("MEMORY_USER_ID", "alice")
    top_k = int(os.environ.get("MEMORY_TOP_K", "5"))
    llm = llm_client()
    if llm is None:
        print("No OPENAI_API_KEY or OPENAI_BASE_URL: answers are an offline echo.", file=sys.stderr)
    with httpx.Client(base_url=base_url, headers={"apikey": service_key}, timeout=60) as memory:
        try:
            for text in read_turns(argv):
                run_turn(memory, llm, user_id, text, top_k)
        except httpx.HTTPStatusError as e:
            print(
                f"{e.request.method} {e.request.url} answered {e.response.status_code}: {e.response.text}",
                file=sys.stderr,
            )
            return 1
        finally:
            if llm is not None:
                llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
