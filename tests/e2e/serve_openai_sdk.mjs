// Drives `anvil serve` with the official OpenAI Node SDK (npm package `openai`) as a real client:
// completions and chat completions, streaming and not, plus the SDK's error classes.
//
// Usage: node serve_openai_sdk.mjs --modules DIR BASE_URL API_KEY MODEL
//   DIR       a folder whose node_modules holds the `openai` package
//   BASE_URL  http://127.0.0.1:PORT/v1
//
// Prints one JSON object on stdout: {"results": {name: ...}, "errors": {name: {...}}}. Every call
// is greedy (temperature 0, EOS ignored), so the Python side can compare with raw HTTP answers.
import path from "node:path";
import {pathToFileURL} from "node:url";

const args = process.argv.slice(2);
const modulesAt = args.indexOf("--modules");
if (modulesAt < 0 || args.length !== 5) {
    console.error("usage: node serve_openai_sdk.mjs --modules DIR BASE_URL API_KEY MODEL");
    process.exit(2);
}
const modulesDir = args[modulesAt + 1];
const [baseURL, apiKey, model] = args.filter((_, i) => i !== modulesAt && i !== modulesAt + 1);

const entry = path.join(path.resolve(modulesDir), "node_modules", "openai", "index.mjs");
const {default: OpenAI} = await import(pathToFileURL(entry).href);
// No retries: a 429 or 5xx must show up here, not be papered over.
const client = new OpenAI({baseURL, apiKey, maxRetries: 0, timeout: 60_000});

const greedy = {temperature: 0, max_tokens: 12, ignore_eos: true};
const messages = [{role: "system", content: "You are terse."}, {role: "user", content: "Name a colour."}];
const results = {};
const errors = {};

async function collect(stream, pick) {
    let text = "";
    let finish = null;
    let usage = null;
    let chunks = 0;
    let firstRole = null;
    for await (const chunk of stream) {
        chunks += 1;
        if (chunk.usage) usage = chunk.usage;
        const choice = chunk.choices?.[0];
        if (!choice) continue;
        if (firstRole === null && choice.delta?.role) firstRole = choice.delta.role;
        text += pick(choice) ?? "";
        if (choice.finish_reason) finish = choice.finish_reason;
    }
    return {text, finish, usage, chunks, firstRole};
}

async function expectError(name, call) {
    try {
        await call();
        errors[name] = {thrown: false};
    } catch (err) {
        errors[name] = {thrown: true, class: err?.constructor?.name, status: err?.status ?? null,
                        code: err?.code ?? null, param: err?.param ?? null, message: String(err?.message ?? err)};
    }
}

try {
    results.models = (await client.models.list()).data.map(m => m.id);

    const completion = await client.completions.create({model, prompt: "Hello world", ...greedy});
    results.completion = {text: completion.choices[0].text, finish: completion.choices[0].finish_reason,
                          usage: completion.usage, object: completion.object, id: completion.id};

    const completionIds = await client.completions.create({model, prompt: [1, 70, 80, 90], ...greedy});
    results.completion_ids = {text: completionIds.choices[0].text};

    results.completion_stream = await collect(
        await client.completions.create({model, prompt: "Hello world", ...greedy, stream: true,
                                         stream_options: {include_usage: true}}),
        choice => choice.text);

    const chat = await client.chat.completions.create({model, messages, ...greedy});
    results.chat = {text: chat.choices[0].message.content, role: chat.choices[0].message.role,
                    finish: chat.choices[0].finish_reason, usage: chat.usage, object: chat.object};

    results.chat_stream = await collect(
        await client.chat.completions.create({model, messages, ...greedy, stream: true,
                                              stream_options: {include_usage: true}}),
        choice => choice.delta?.content);

    const logprobs = await client.chat.completions.create({model, messages, ...greedy, max_tokens: 3,
                                                           logprobs: true, top_logprobs: 2});
    results.chat_logprobs = logprobs.choices[0].logprobs;
} catch (err) {
    results.fatal = String(err?.stack ?? err);
}

await expectError("bad_max_tokens", () => client.completions.create({model, prompt: "x", max_tokens: -1}));
await expectError("unknown_model", () => client.chat.completions.create({model: "gpt-nope", messages}));
await expectError("too_long", () => client.completions.create({model, prompt: "word ".repeat(400)}));
const wrongKey = new OpenAI({baseURL, apiKey: "wrong-key", maxRetries: 0});
await expectError("wrong_key", () => wrongKey.models.list());

console.log(JSON.stringify({results, errors}));
