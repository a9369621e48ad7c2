// A chat loop with long-term memory: search the user's memories before answering, add the turn after.
// Plain fetch, no dependencies. Node 20 cannot run .ts directly, so compile it with tsc, then run it:
//
//   npx -y -p typescript@5 tsc --strict --target es2022 --module commonjs --lib es2022,dom --outDir /tmp/chat_loop examples/chat_loop.ts && node /tmp/chat_loop/chat_loop.js "I am allergic to peanuts" "What should I avoid eating?"
//
// (Node 22.6+: `node --experimental-strip-types examples/chat_loop.ts "..."`; Node 23.6+ needs no flag.)
// Turns come from the arguments, else from stdin (one per line). Environment: MEMORY_URL (default
// http://127.0.0.1:8000), MEMORY_SERVICE_KEY (required; `python -m app status --json` prints it as
// service_role_key), MEMORY_USER_ID (default alice), MEMORY_TOP_K (default 5). With OPENAI_API_KEY or
// OPENAI_BASE_URL set, answers come from that OpenAI-compatible chat endpoint (OPENAI_MODEL, default
// gpt-4o-mini); otherwise from an offline echo that quotes the memories it used, so it runs with no key.

// The little of Node's globals this file uses, so it compiles without @types/node.
declare const process: {
  env: Record<string, string | undefined>;
  argv: string[];
  exitCode?: number;
  stdin: AsyncIterable<Uint8Array | string>;
};

type ChatMessage = { role: "system" | "user" | "assistant"; content: string };
type ScoredMemory = { id: string; memory: string; score: number };
type AddResult = { id: string | null; memory: string; event: "ADD" | "UPDATE" | "DELETE" | "NONE" };

const OFFLINE = "(offline echo)";
const env = process.env;
const memoryUrl = (env.MEMORY_URL ?? "http://127.0.0.1:8000").replace(/\/$/, "");
const serviceKey = env.MEMORY_SERVICE_KEY ?? "";
const userId = env.MEMORY_USER_ID ?? "alice";
const topK = Number(env.MEMORY_TOP_K ?? "5");
const llmConfigured = Boolean(env.OPENAI_API_KEY || env.OPENAI_BASE_URL);

async function postJson<T>(url: string, headers: Record<string, string>, body: unknown): Promise<T> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    throw new Error(`POST ${url} answered ${response.status}: ${await response.text()}`);
  }
  return (await response.json()) as T;
}

// Step 1, before answering: the user's memories nearest in meaning to what they just said.
async function searchMemories(query: string): Promise<ScoredMemory[]> {
  const body = { query, user_id: userId, top_k: topK };
  const found = await postJson<{ results: ScoredMemory[] }>(`${memoryUrl}/mem/v1/search`, { apikey: serviceKey }, body);
  return found.results;
}

// Step 2: the memories go into the system message; the model decides which ones matter.
function buildPrompt(memories: ScoredMemory[], userText: string): ChatMessage[] {
  const known = memories.map((m) => `- ${m.memory}`).join("\n") || "(nothing yet)";
  const system =
    "You are a helpful assistant with long-term memory. What you remember about this user:\n" +
    `${known}\nUse it when it is relevant; do not mention it when it is not.`;
  return [
    { role: "system", content: system },
    { role: "user", content: userText },
  ];
}

// Step 3: an OpenAI-compatible chat completion, or the offline echo when no model is configured.
async function answer(prompt: ChatMessage[], memories: ScoredMemory[]): Promise<string> {
  if (!llmConfigured) {
    if (memories.length === 0) return `${OFFLINE} I don't remember anything relevant about you yet.`;
    const quoted = memories.map((m) => `"${m.memory}"`).join("; ");
    return `${OFFLINE} Here is what I remember that may matter: ${quoted}.`;
  }
  const base = (env.OPENAI_BASE_URL ?? "https://api.openai.com/v1").replace(/\/$/, "");
  const headers: Record<string, string> = env.OPENAI_API_KEY ? { authorization: `Bearer ${env.OPENAI_API_KEY}` } : {};
  const body = { model: env.OPENAI_MODEL ?? "gpt-4o-mini", messages: prompt };
  const completion = await postJson<{ choices: { message: { content: string } }[] }>(
    `${base}/chat/completions`,
    headers,
    body,
  );
  return completion.choices[0].message.content;
}

// Step 4, after answering: the service keeps what is worth keeping (verbatim without a chat model).
async function addTurn(userText: string, reply: string): Promise<AddResult[]> {
  const messages: ChatMessage[] = [
    { role: "user", content: userText },
    { role: "assistant", content: reply },
  ];
  const body = { messages, user_id: userId };
  const added = await postJson<{ results: AddResult[] }>(`${memoryUrl}/mem/v1/memories`, { apikey: serviceKey }, body);
  return added.results;
}

async function runTurn(text: string): Promise<void> {
  console.log(`you: ${text}`);
  const memories = await searchMemories(text);
  console.log(`memories used (${memories.length}):`);
  for (const m of memories) console.log(`  - ${m.memory} (score ${m.score.toFixed(2)})`);
  const reply = await answer(buildPrompt(memories, text), memories);
  console.log(`assistant: ${reply}`);
  const stored = await addTurn(text, reply);
  console.log(`stored: ${stored.map((r) => `${r.event} ${JSON.stringify(r.memory)}`).join(", ") || "nothing new"}\n`);
}

async function* readTurns(args: string[]): AsyncGenerator<string> {
  if (args.length > 0) {
    yield* args;
    return;
  }
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of process.stdin) {
    pending += typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) if (line.trim()) yield line.trim();
  }
  if (pending.trim()) yield pending.trim();
}

async function main(): Promise<number> {
  if (!serviceKey) {
    console.error("Set MEMORY_SERVICE_KEY (`python -m app status --json` prints service_role_key).");
    return 2;
  }
  if (!llmConfigured) console.error("No OPENAI_API_KEY or OPENAI_BASE_URL: answers are an offline echo.");
  try {
    for await (const text of readTurns(process.argv.slice(2))) await runTurn(text);
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    return 1;
  }
  return 0;
}

main().then((code) => {
  process.exitCode = code;
});
