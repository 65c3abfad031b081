// Functions written with the official Inngest TypeScript SDK (npm `inngest` v4) with the flow-control
// settings enforced at ingest (rateLimit, idempotency, singleton, debounce, batchEvents), for
// tests/test_checkpoint/test_typescript_flow_ingest.py. Each run returns the data of the events it got, from
// a step (checkpointed: the SDK's default), so that the run's output shows which events those were.
//
// Environment: PORT (where to listen), GATEWAY_URL (the Stepline gateway: the SDK's base URL),
// INNGEST_SIGNING_KEY (cloud mode).

import express from "express";
import { Inngest } from "inngest";
import { serve } from "inngest/express";

const port = Number(process.env.PORT ?? 3000);
const signingKey = process.env.INNGEST_SIGNING_KEY || undefined;
const inngest = new Inngest({ id: "tsflow", baseUrl: process.env.GATEWAY_URL, isDev: !signingKey, signingKey });

const received = ({ events, step }) => step.run("received", () => events.map((e) => e.data));

const limited = inngest.createFunction(
  { id: "limited", triggers: [{ event: "tsflow/limited" }], rateLimit: { limit: 1, period: "1m", key: "event.data.user" } },
  received,
);
const once = inngest.createFunction(
  { id: "once", triggers: [{ event: "tsflow/once" }], idempotency: "event.data.order" },
  received,
);
const single = inngest.createFunction(
  { id: "single", triggers: [{ event: "tsflow/single" }], singleton: { key: "event.data.user", mode: "cancel" } },
  async ({ events, step }) => {
    const got = await step.run("received", () => events.map((e) => e.data));
    await step.sleep("rest", "1h");
    return got;
  },
);
const debounced = inngest.createFunction(
  { id: "debounced", triggers: [{ event: "tsflow/debounced" }], debounce: { period: "5s", key: "event.data.user" } },
  received,
);
const batched = inngest.createFunction(
  { id: "batched", triggers: [{ event: "tsflow/batched" }], batchEvents: { maxSize: 3, timeout: "5s" } },
  received,
);

const app = express();
app.use(express.json());
app.use("/api/inngest", serve({ client: inngest, functions: [limited, once, single, debounced, batched] }));
app.get("/ready", (_req, res) => res.json({ ok: true }));
app.listen(port, "127.0.0.1");
