// Functions written with the official Inngest TypeScript SDK (npm `inngest` v4, checkpointing on: its
// default) under the flow control Stepline enforces when calls are claimed, for
// tests/test_flow/test_official_sdks.py: a concurrency limit per key (a single entry, sent as a bare
// object), a throttle, a priority behind a limit of one, and a finish timeout over a sleep.
//
// Environment: PORT (where to listen), GATEWAY_URL (the Stepline gateway), INNGEST_SIGNING_KEY (cloud mode).
// GET /observed answers {"most": {key: most calls in a step at once}, "started": {function: [data.n, ...]}}.

import express from "express";
import { Inngest } from "inngest";
import { serve } from "inngest/express";

const port = Number(process.env.PORT ?? 3000);
const signingKey = process.env.INNGEST_SIGNING_KEY || undefined;
const inngest = new Inngest({
  id: "tsflow",
  baseUrl: process.env.GATEWAY_URL,
  isDev: !signingKey,
  signingKey,
});

const inFlight = {};
const most = {};
const started = {};

async function observed(fn, key, n, holdMs) {
  (started[fn] ??= []).push(n);
  inFlight[key] = (inFlight[key] ?? 0) + 1;
  most[key] = Math.max(most[key] ?? 0, inFlight[key]);
  await new Promise((resolve) => setTimeout(resolve, holdMs));
  inFlight[key] -= 1;
  return n;
}

const limited = inngest.createFunction(
  {
    id: "limited",
    triggers: [{ event: "tsflow/limited" }],
    concurrency: { limit: 2, key: "event.data.acct" },
  },
  async ({ event, step }) => {
    const n = await step.run("work", () => observed("limited", event.data.acct, event.data.n, 300));
    return await step.run("after", () => n + 1);
  },
);

const paced = inngest.createFunction(
  { id: "paced", triggers: [{ event: "tsflow/paced" }], throttle: { limit: 1, period: "1m" } },
  async ({ event, step }) => await step.run("work", () => observed("paced", "paced", event.data.n, 0)),
);

const ranked = inngest.createFunction(
  {
    id: "ranked",
    triggers: [{ event: "tsflow/ranked" }],
    concurrency: 1,
    priority: { run: "event.data.p" },
  },
  async ({ event, step }) => await step.run("work", () => observed("ranked", "ranked", event.data.n, 200)),
);

const timed = inngest.createFunction(
  { id: "timed", triggers: [{ event: "tsflow/timed" }], timeouts: { finish: "1m" } },
  async ({ event, step }) => {
    await step.run("work", () => observed("timed", "timed", event.data.n, 0));
    await step.sleep("nap", `${event.data.nap_s}s`);
    return "done";
  },
);

const app = express();
app.use(express.json());
app.use("/api/inngest", serve({ client: inngest, functions: [limited, paced, ranked, timed] }));
app.get("/observed", (_req, res) => res.json({ most, started }));
app.listen(port, "127.0.0.1");
