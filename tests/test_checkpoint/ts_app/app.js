// Functions written with the official Inngest TypeScript SDK (npm `inngest` v4), served by Express, that
// Stepline's checkpointing tests run (tests/test_checkpoint/test_typescript_sdk.py).
//
// Environment: PORT (where to listen), GATEWAY_URL (the Stepline gateway: the SDK's base URL),
// INNGEST_SIGNING_KEY (cloud mode; without it, dev mode), CHECKPOINTING ("off" turns it off; anything else
// keeps the SDK's default, which is on).
//
// GET /counts answers what ran here: {"steps": {name: times run}, "calls": {fnId: calls received}}.

import express from "express";
import { Inngest, NonRetriableError } from "inngest";
import { serve } from "inngest/express";

const port = Number(process.env.PORT ?? 3000);
const gatewayUrl = process.env.GATEWAY_URL ?? "http://127.0.0.1:8288";
const signingKey = process.env.INNGEST_SIGNING_KEY || undefined;

const inngest = new Inngest({
  id: "ts",
  baseUrl: gatewayUrl,
  isDev: !signingKey,
  signingKey,
  ...(process.env.CHECKPOINTING === "off" ? { checkpointing: false } : {}),
});

const steps = {};
const calls = {};

function ran(name, value) {
  steps[name] = (steps[name] ?? 0) + 1;
  return value;
}

const sequential = inngest.createFunction(
  { id: "sequential", retries: 3, triggers: [{ event: "ts/sequential" }] },
  async ({ event, step }) => {
    const a = await step.run("first", () => ran("first", event.data.n + 1));
    const b = await step.run("flaky", () => {
      ran("flaky");
      if (steps.flaky === 1) {
        throw new Error("flaky fails once");
      }
      return "ok";
    });
    const c = await step.run("third", () => ran("third", a * 2));
    return { a, b, c };
  },
);

const parallel = inngest.createFunction(
  { id: "parallel", triggers: [{ event: "ts/parallel" }] },
  async ({ step }) => {
    const before = await step.run("before", () => ran("before", 1));
    const [one, two] = await Promise.all([
      step.run("one", () => ran("one", 10)),
      step.run("two", () => ran("two", 20)),
    ]);
    const after = await step.run("after", () => ran("after", before + one + two));
    return { before, one, two, after };
  },
);

const hopeless = inngest.createFunction(
  { id: "hopeless", retries: 3, triggers: [{ event: "ts/hopeless" }] },
  async ({ step }) => {
    await step.run("check", () => ran("check", true));
    await step.run("refuse", () => {
      ran("refuse");
      throw new NonRetriableError("this order cannot be processed");
    });
    return "unreachable";
  },
);

const sleeper = inngest.createFunction(
  { id: "sleeper", triggers: [{ event: "ts/sleep" }] },
  async ({ step }) => {
    const before = await step.run("before-nap", () => ran("before-nap", "before"));
    await step.sleep("nap", "1h");
    const after = await step.run("after-nap", () => ran("after-nap", "after"));
    return [before, after];
  },
);

const waiter = inngest.createFunction(
  { id: "waiter", triggers: [{ event: "ts/order" }] },
  async ({ event, step }) => {
    const order = await step.run("prepare", () => ran("prepare", event.data.order));
    const approval = await step.waitForEvent("approval", {
      event: "ts/approved",
      timeout: "1h",
      if: "event.data.order == async.data.order",
    });
    const outcome = await step.run("conclude", () =>
      ran("conclude", approval ? `approved by ${approval.data.by}` : "timed out"),
    );
    return { order, outcome };
  },
);

// Answers the version of its event as the SDK hands it over.
const versioned = inngest.createFunction(
  { id: "versioned", triggers: [{ event: "ts/versioned" }] },
  async ({ event }) => ({ v: event.v ?? null, data: event.data }),
);

const app = express();
app.use(express.json({ limit: "10mb" }));
app.use("/api/inngest", (req, _res, next) => {
  if (req.method === "POST" && req.query.fnId) {
    calls[req.query.fnId] = (calls[req.query.fnId] ?? 0) + 1;
  }
  next();
});
app.use(
  "/api/inngest",
  serve({ client: inngest, functions: [sequential, parallel, hopeless, sleeper, waiter, versioned] }),
);
app.get("/counts", (_req, res) => res.json({ steps, calls }));

app.listen(port, "127.0.0.1", () => {
  console.log(`ts app listening on ${port}`);
});
