// A reference for scripts/bench.sh, next to the floor: the same constant response plus one
// console.log line the size of the real worker's request log line. Under `wrangler dev` a
// console line travels over the inspector to wrangler's Node.js process, which prints it;
// this worker shows what that costs on its own.
const line = JSON.stringify({
  request_id: "01a207a1-d293-724d-9722-c6132be75c78",
  method: "GET",
  route: "/api/v1/cloud-providers/{provider}",
  status: 200,
  duration_ms: 3,
  team_id: "01a207a1-3cd6-7e88-a2bc-f25f7542ed77",
  principal_kind: "secret_key",
  principal_id: "01a207a1-3cd6-7e88-a2bc-f25f7542ed78",
});
export default {
  fetch() {
    console.log(line);
    return new Response("ok");
  },
};
