// Functions written with the official Inngest TypeScript SDK (npm `inngest` v4) that use every setting a
// sync carries (triggers with expressions and crons, retries, cancellation, flow control, failure
// handlers, invoke-only functions), for tests/test_gateway/test_sync.py: the gateway must accept the sync
// exactly as this SDK sends it.
//
// Environment: PORT (where to listen), GATEWAY_URL (the Stepline gateway: the SDK's base URL).

import express from "express";
import { Inngest } from "inngest";
import { serve } from "inngest/express";

const port = Number(process.env.PORT ?? 3000);
const inngest = new Inngest({ id: "tsettings", baseUrl: process.env.GATEWAY_URL, isDev: true });

const rich = inngest.createFunction(
  {
    id: "rich",
    name: "Every setting",
    retries: 2,
    triggers: [{ event: "tsettings/go", if: "event.data.n > 1" }, { cron: "TZ=Europe/Paris 0 8 * * *" }],
    cancelOn: [
      { event: "tsettings/stop", if: "event.data.id == async.data.id", timeout: "1h" },
      { event: "tsettings/halt", match: "data.id" },
    ],
    concurrency: [{ limit: 2, key: "event.data.k", scope: "fn" }],
    debounce: { period: "10s", timeout: "1m" },
    throttle: { limit: 3, period: "1m", burst: 2 },
    rateLimit: { limit: 5, period: "1h" },
    priority: { run: "event.data.p" },
    idempotency: "event.data.id",
    timeouts: { start: "5m", finish: "1h" },
    onFailure: async () => null,
  },
  async () => 1,
);
const batch = inngest.createFunction(
  {
    id: "batch",
    triggers: [{ event: "tsettings/batch" }],
    batchEvents: { maxSize: 10, timeout: "5s", key: "event.data.k", if: "event.data.small" },
    singleton: { mode: "skip" },
    concurrency: 5,
  },
  async () => 1,
);
const keyed = inngest.createFunction(
  {
    id: "keyed",
    triggers: [{ event: "tsettings/keyed" }],
    concurrency: { limit: 3, key: "event.data.acct", scope: "account" },
    throttle: { limit: 1, period: "1s", key: "event.data.acct" },
    rateLimit: { limit: 2, period: "10s", key: "event.data.acct" },
    debounce: { period: "5s", key: "event.data.acct" },
    singleton: { mode: "cancel", key: "event.data.acct" },
  },
  async () => 1,
);
const invoked = inngest.createFunction({ id: "invoked-only" }, async () => 1);

const app = express();
app.use(express.json());
app.use("/api/inngest", serve({ client: inngest, functions: [rich, batch, keyed, invoked] }));
app.get("/ready", (_req, res) => res.json({ ok: true }));
app.listen(port, "127.0.0.1");
