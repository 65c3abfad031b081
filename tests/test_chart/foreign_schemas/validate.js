// Checks custom resources of other operators (CloudNativePG, Prometheus Operator, KEDA) against their published
// models: each object's values against the JSON schema (types, enums, required fields), and its field names
// against the TypeScript declarations (a misspelt field fails tsc's excess-property check, which the schemas
// alone would let through). Reads a JSON array of objects on stdin; prints one line per problem; exits 1 if any.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { Cluster, Pooler } from "@kubernetes-models/cloudnative-pg/postgresql.cnpg.io/v1";
import {
  PodMonitor,
  PrometheusRule,
  ServiceMonitor,
} from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { ScaledObject, TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1";

const HERE = dirname(fileURLToPath(import.meta.url));
// apiVersion + kind -> the model class and the module declaring its interface.
const MODELS = {
  "postgresql.cnpg.io/v1 Cluster": [Cluster, "@kubernetes-models/cloudnative-pg/postgresql.cnpg.io/v1/Cluster"],
  "postgresql.cnpg.io/v1 Pooler": [Pooler, "@kubernetes-models/cloudnative-pg/postgresql.cnpg.io/v1/Pooler"],
  "monitoring.coreos.com/v1 ServiceMonitor": [
    ServiceMonitor,
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor",
  ],
  "monitoring.coreos.com/v1 PodMonitor": [
    PodMonitor,
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor",
  ],
  "monitoring.coreos.com/v1 PrometheusRule": [
    PrometheusRule,
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule",
  ],
  "keda.sh/v1alpha1 ScaledObject": [ScaledObject, "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject"],
  "keda.sh/v1alpha1 TriggerAuthentication": [
    TriggerAuthentication,
    "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication",
  ],
};

let input = "";
for await (const chunk of process.stdin) input += chunk;
const problems = [];
const declarations = [];
JSON.parse(input).forEach((object, index) => {
  const name = `${object.kind}/${object.metadata?.name}`;
  const known = MODELS[`${object.apiVersion} ${object.kind}`];
  if (!known) {
    problems.push(`${name}: no schema known for ${object.apiVersion} ${object.kind}`);
    return;
  }
  const [Model, module] = known;
  try {
    new Model(object).validate();
  } catch (error) {
    problems.push(`${name}: ${error.message.replace(/\s+/g, " ")}`);
  }
  declarations.push(
    `import type { I${object.kind} as T${index} } from "${module}";\n` +
      `// ${name}\nexport const o${index}: T${index} = ${JSON.stringify(object, null, 2)};\n`,
  );
});
if (declarations.length) {
  const folder = mkdtempSync(join(HERE, ".check-"));
  const file = join(folder, "objects.ts");
  writeFileSync(file, declarations.join("\n"));
  try {
    execFileSync(
      process.execPath,
      [join(HERE, "node_modules/typescript/lib/tsc.js"), "--noEmit", "--strict", "--skipLibCheck",
       "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", file],
      { encoding: "utf-8" },
    );
  } catch (error) {
    problems.push(`field names: ${error.stdout.trim()}`);
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}
for (const problem of problems) console.log(problem);
process.exit(problems.length ? 1 : 0);
