// Runs GGUF files in llama.cpp (the prebuilt CPU binaries of node-llama-cpp) for interop tests:
// greedy decoding from exact token ids, and the logits of a given token sequence.
//
// Usage: node llama_cpp_greedy.mjs --modules DIR JOBS.json
//   DIR        a folder whose node_modules holds node-llama-cpp and its prebuilt @node-llama-cpp/<platform>
//   JOBS.json  {"threads": 1, "jobs": [{"model": "x.gguf", "prompt": [1, 70], "n": 16,
//                                       "score": [1, 70, 5, 9], "logitsOut": "x.bin"}]}
//
// For each job prints one JSON line on stdout, in order:
//   {"model": ..., "ok": true, "ids": [...]}                      n greedy ids after prompt (no BOS added, EOS ignored)
//   {"model": ..., "ok": false, "error": "...", "log": [...]}     llama.cpp refused the file, with its log lines
// With "score" and "logitsOut", the logits after each token of "score" (teacher forcing, a fresh sequence) are
// written to logitsOut as len(score) x n_vocab float32 little-endian: the layout of `anvil run --logits-out`.
// Before each job a "job N: MODEL" line goes to stderr, so a job that aborts the process can be named.
//
// Nothing is downloaded or compiled: only a prebuilt CPU binary is accepted (gpu: false, build: "never").
// Threads default to 1: with 2 threads on a 2-core machine the prebuilt ggml thread pool is 10-100x slower.
import fs from "node:fs";
import path from "node:path";
import {pathToFileURL} from "node:url";

process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = "true";
process.env.NODE_LLAMA_CPP_GPU = "false";

const args = process.argv.slice(2);
const modulesAt = args.indexOf("--modules");
if (modulesAt < 0 || args.length !== 3) {
    console.error("usage: node llama_cpp_greedy.mjs --modules DIR JOBS.json");
    process.exit(2);
}
const modulesDir = args[modulesAt + 1];
const jobsFile = args.filter((_, i) => i !== modulesAt && i !== modulesAt + 1)[0];
const spec = JSON.parse(fs.readFileSync(jobsFile, "utf8"));
const threads = spec.threads ?? 1;

const entry = path.join(path.resolve(modulesDir), "node_modules", "node-llama-cpp", "dist", "index.js");
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(entry).href);

let log = [];
const llama = await getLlama({
    gpu: false,
    build: "never",
    skipDownload: true,
    usePrebuiltBinaries: true,
    progressLogs: false,
    maxThreads: threads,
    logLevel: LlamaLogLevel.warn,
    logger: (level, message) => {
        const line = String(message).trimEnd();
        if (line) log.push(`[${level}] ${line}`);
    },
});
console.error(`llama.cpp: ${llama.buildType} binary, gpu ${llama.gpu}, llama.cpp release ${llama.llamaCppRelease?.release}`);

const greedy = {temperature: 0};

// Logits after each token of `tokens`, as Map<token, logit> rows.
async function score(sequence, tokens) {
    const items = tokens.map(token => [token, {generateNext: {logits: true, options: greedy}}]);
    const out = await sequence.controlledEvaluate(items);
    return out.map((o, i) => {
        if (!o?.next?.logits) throw new Error(`no logits at position ${i}`);
        return o.next.logits;
    });
}

async function generate(sequence, prompt, n) {
    const last = prompt.length - 1;
    const items = prompt.map((token, i) => i < last ? token : [token, {generateNext: {token: true, options: greedy}}]);
    let next = (await sequence.controlledEvaluate(items))[last]?.next?.token;
    const ids = [];
    while (true) {
        if (next == null) throw new Error(`no token sampled after ${ids.length} generated tokens`);
        ids.push(next);
        if (ids.length >= n) return ids;
        next = (await sequence.controlledEvaluate([[next, {generateNext: {token: true, options: greedy}}]]))[0]?.next?.token;
    }
}

async function runJob(job) {
    const model = await llama.loadModel({modelPath: job.model, gpuLayers: 0, useMmap: true, checkTensors: true});
    try {
        const n = job.n ?? 16;
        const context = await model.createContext({
            contextSize: Math.max(64, job.prompt.length + n + 8, (job.score?.length ?? 0) + 8),
            batchSize: Math.max(64, job.prompt.length, job.score?.length ?? 0),
            sequences: 1,
            threads,
            flashAttention: false,
            // An F32 KV cache, as anvil keeps it (llama.cpp's default is F16).
            experimentalKvCacheKeyType: "F32",
            experimentalKvCacheValueType: "F32",
            failedCreationRemedy: false,
            ignoreMemorySafetyChecks: true,
        });
        try {
            const sequence = context.getSequence();
            const ids = await generate(sequence, job.prompt, n);
            if (job.score && job.logitsOut) {
                await sequence.clearHistory();
                const rows = await score(sequence, job.score);
                const vocab = rows[0].size;
                const buffer = Buffer.alloc(rows.length * vocab * 4);
                rows.forEach((row, r) => {
                    for (const [token, value] of row) buffer.writeFloatLE(value, (r * vocab + token) * 4);
                });
                fs.writeFileSync(job.logitsOut, buffer);
            }
            return {ids};
        } finally {
            await context.dispose();
        }
    } finally {
        await model.dispose();
    }
}

for (const [index, job] of spec.jobs.entries()) {
    console.error(`job ${index}: ${job.model}`);
    log = [];
    let result;
    try {
        result = {model: job.model, ok: true, ...(await runJob(job))};
    } catch (err) {
        result = {model: job.model, ok: false, error: String(err?.message ?? err), log};
    }
    console.log(JSON.stringify(result));
}
await llama.dispose();
