// A function written with the official Inngest TypeScript SDK (npm `inngest` v4, checkpointing on: its
// default) whose first attempt hangs, for tests/test_gateway/test_retry_policy.py: a Function manifest
// gives it a retry policy with a short call timeout, and the gateway must cut the attempt off and retry.
//
// Environment: PORT (where to listen), GATEWAY_URL (the Stepline gateway: the SDK's base URL).
// GET /started answers {started: the attempts whose step "work" began, in order, ranBefore: runs of
// the step "before"}.

import express from "express";
import { Inngest } from "inngest";
import { serve } from "inngest/express";

const port = Number(process.env.PORT ?? 3000);
const inngest = new Inngest({ id: "tspolicy", baseUrl: process.env.GATEWAY_URL, isDev: true });
const started = [];
let ranBefore = 0;

const slow = inngest.createFunction(
  { id: "slow", retries: 2, triggers: [{ event: "tspolicy/slow" }] },
  async ({ step, attempt }) => {
    const before = await step.run("before", async () => {
      ranBefore += 1;
      return "before";
    });
    const work = await step.run("work", async () => {
      started.push(attempt);
      if (attempt === 0) await new Promise((resolve) => setTimeout(resolve, 60_000));
      return `attempt ${attempt}`;
    });
    return `${before}, ${work}`;
  },
);

const app = express();
app.use(express.json());
app.use("/api/inngest", serve({ client: inngest, functions: [slow] }));
app.get("/started", (_req, res) => res.json({ started, ranBefore }));
app.get("/ready", (_req, res) => res.json({ ok: true }));
app.listen(port, "127.0.0.1");
