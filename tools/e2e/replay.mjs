// One payment, many requests: an official resource server (v1 `x402-express` or v2
// `@x402/express`) pointed at our facilitator receives the same payment header on `copies`
// concurrent requests. Exactly one may be served the paid content.
// Usage: node tools/e2e/replay.mjs state.json <1|2> [copies=10]
import { loadState, main } from "./common.mjs";
import { CONTENT_V1, CONTENT_V2, paymentHeaders, serveV1, serveV2 } from "./servers.mjs";

main(async () => {
  const state = loadState();
  const version = Number(process.argv[3] ?? 2);
  const copies = Number(process.argv[4] ?? 10);
  const server = version === 1 ? await serveV1(state) : await serveV2(state);
  const content = version === 1 ? CONTENT_V1 : CONTENT_V2;
  try {
    const headers = await paymentHeaders(state, server.url, version);
    const answers = await Promise.all(
      Array.from({ length: copies }, async () => {
        const res = await fetch(`${server.url}/paid`, { headers });
        return { status: res.status, body: await res.text() };
      }),
    );
    const served = answers.filter((a) => a.status === 200 && a.body.includes(content)).length;
    return {
      ok: served === 1,
      version,
      copies,
      served,
      statuses: answers.map((a) => a.status),
    };
  } finally {
    await server.close();
  }
});
